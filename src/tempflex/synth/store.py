"""Crash-safe, resumable JSONL output: ``OUT/shards/part-NNNNN.jsonl`` (accepted) and ``OUT/rejected.jsonl``.

Every record is one ``write`` of a whole line followed by flush + fsync, under a lock, before the video counts as
done. A SIGKILL can therefore leave at most a torn last line, which ``open`` detects (no final newline, or a last
line that is not JSON) and truncates away; the video is then redone. Reruns skip every id already in a shard
(and in ``rejected.jsonl`` unless rejections are retried), so no video is written twice.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tempflex.atomic import fsync_dir, write_jsonl_atomic

SHARD_PATTERN = "part-{:05d}.jsonl"


class StoreError(ValueError):
    """An output folder that cannot be resumed safely (a corrupt line before the last)."""


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """The records of a JSONL file; a torn last line is dropped (and cut from the file if ``repair``)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline (b"" when the file is whole)
    records, keep = [], 0
    for i, line in enumerate(complete):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == len(complete) - 1 and not tail:  # a torn last line that happens to end in a newline
                break
            raise StoreError(f"{path} line {i + 1}: corrupt record before the end of the file") from None
        records.append(record)
        keep += len(line) + 1
    if repair and keep != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    return records


class Store:
    """The output folder of one run; ``append_*`` are thread-safe and durable when they return."""

    def __init__(self, out_dir: str | Path, *, shard_size: int = 1000) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.out_dir = Path(out_dir)
        self.shard_dir = self.out_dir / "shards"
        self.rejected_path = self.out_dir / "rejected.jsonl"
        self.shard_size = shard_size
        self._lock = threading.Lock()
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self.accepted: set[str] = set()
        self.rejected: set[str] = set()
        shards = sorted(self.shard_dir.glob("part-*.jsonl"))
        for shard in shards:
            self.accepted.update(str(r["video_id"]) for r in read_jsonl(shard, repair=True))
        self._rejections = read_jsonl(self.rejected_path, repair=True)
        self.rejected = {str(r["video_id"]) for r in self._rejections} - self.accepted
        self._shard_index = int(shards[-1].stem.split("-")[1]) if shards else 0
        last = self.shard_dir / SHARD_PATTERN.format(self._shard_index)
        self._shard_count = len(read_jsonl(last)) if last.exists() else 0

    @property
    def done(self) -> set[str]:
        return self.accepted | self.rejected

    def forget_rejections(self, ids: set[str]) -> None:
        """Drop these ids from ``rejected.jsonl`` (atomically: temp file, fsync, rename) so they can be redone."""
        with self._lock:
            kept = [r for r in self._rejections if str(r["video_id"]) not in ids]
            write_jsonl_atomic(self.rejected_path, kept)
            self._rejections = kept
            self.rejected -= ids

    def append_accepted(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._shard_count >= self.shard_size:
                self._shard_index, self._shard_count = self._shard_index + 1, 0
            path = self.shard_dir / SHARD_PATTERN.format(self._shard_index)
            _append_line(path, record)
            self._shard_count += 1
            self.accepted.add(str(record["video_id"]))

    def append_rejected(self, record: dict[str, Any]) -> None:
        with self._lock:
            _append_line(self.rejected_path, record)
            self._rejections.append(record)
            self.rejected.add(str(record["video_id"]))

    def shard_paths(self) -> list[Path]:
        return sorted(self.shard_dir.glob("part-*.jsonl"))


def _append_line(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    new = not path.exists()
    with open(path, "ab") as handle:
        handle.write(line)  # one write: a crash leaves the line whole or torn, never interleaved
        handle.flush()
        os.fsync(handle.fileno())
    if new:
        fsync_dir(path.parent)
