"""Crash-safe file writes shared by long jobs (training checkpoints, data synthesis).

``write_text_atomic`` writes a sibling temporary file, fsyncs it, renames it over the target and fsyncs the
folder, so a reader (or a rerun after SIGKILL) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temporary sibling, fsync, rename, fsync of the folder)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with one JSON line per record, atomically."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class OutputLocked(ValueError):
    """Another live process holds the output folder."""


@contextmanager
def exclusive_output(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder/.lock`` for one run (an advisory ``flock``, with the holder's pid written in it): a second run
    on the same folder stops with one line naming the holder; the kernel drops the lock of a killed run, so its
    leftover file is simply taken over."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(f"{folder} is in use by another {what} (pid {holder}); wait for it or use another "
                               "output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
