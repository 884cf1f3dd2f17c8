"""``tempflex synth-merge DIR... --out DIR``: one output folder from the folders of a sharded (or split) synthesis.

Checks first, writes nothing until they pass: every input is an output folder of ``tempflex synth`` (``shards/``
and ``synth.json``); all were made with the same settings (model, prompt, frame grids); shards of one split share K
and no index is given twice, and every record lies in its folder's shard (so folders of different manifests or
splits are not mixed); unsharded folders (K = 1) may be merged as independent runs. The inputs are held (their
``.lock``) so that no synth run writes them meanwhile.

The merged folder has the usual layout (``shards/``, ``rejected.jsonl``, ``train/``, the report, ``synth.json``
listing the inputs): the accepted records in input order, one per video id (the first kept), the rejections of
videos accepted nowhere. Every file is written whole (temp file + rename); a merge that stops half-way is
finished by running it again, since ``--out`` may be non-empty only when it is a merge of the same inputs (or of
fewer: shards that finished later are added by merging again with them).
``dedup=True`` applies the project's de-duplication (near-duplicate videos, repeated questions) to the union,
which finds the duplicates that per-shard de-duplication cannot see.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempflex.atomic import exclusive_output, write_jsonl_atomic, write_text_atomic
from tempflex.synth.export import export_training
from tempflex.synth.report import build_report, write_report
from tempflex.synth.sharding import INFO_FILE, OutputInfo, ShardSpec, read_info, settings_difference
from tempflex.synth.store import SHARD_PATTERN, read_jsonl


@dataclass
class MergeResult:
    accepted: int = 0  # videos in the merged shards
    rejected: int = 0  # videos rejected in every input that had them
    duplicates: int = 0  # accepted records dropped because their video id came earlier
    missing_shards: list[int] = field(default_factory=list)  # indices of the split not among the inputs
    num_shards: int = 1
    dedup: dict[str, int] | None = None  # what de-duplication dropped; None without it
    paths: dict[str, Path] = field(default_factory=dict)  # report files by kind

    def line(self) -> str:
        text = f"accepted {self.accepted}, rejected {self.rejected}, duplicate ids dropped {self.duplicates}"
        if self.missing_shards:
            text += f"; missing shards {', '.join(map(str, self.missing_shards))} of {self.num_shards}"
        return text


def _read_input(folder: Path) -> OutputInfo:
    if not (folder / "shards").is_dir():
        raise ValueError(f"{folder}: not an output folder of `tempflex synth` (no shards/ folder)")
    info = read_info(folder)
    if info is None:
        raise ValueError(f"{folder}: no {INFO_FILE} (made by an older tempflex synth): run its `tempflex synth` "
                         "command once more to record its shard and settings (nothing is redone)")
    return info


def check_inputs(folders: Sequence[Path]) -> OutputInfo:
    """Validate the inputs (module docstring); the settings and split they share, or a one-line ``ValueError``."""
    if not folders:
        raise ValueError("give at least one output folder to merge")
    infos = {folder: _read_input(folder) for folder in folders}
    if len(infos) < len(folders):
        raise ValueError("an output folder is given twice")
    first, base = folders[0], infos[folders[0]]
    owner: dict[int, Path] = {}
    for folder, info in infos.items():
        changed = settings_difference(base.settings, info.settings)
        if changed:
            raise ValueError(f"cannot merge {first} and {folder}: made with different settings ({changed})")
        if info.shard.num_shards != base.shard.num_shards:
            raise ValueError(f"cannot merge {first} ({base.shard.label()}) and {folder} ({info.shard.label()}): "
                             "different --num-shards")
        if base.shard.num_shards > 1 and info.shard.index in owner:
            raise ValueError(f"{owner[info.shard.index]} and {folder} are both {info.shard.label()}: overlapping shards")
        owner[info.shard.index] = folder
    return base


def _records(folder: Path, shard: ShardSpec) -> Iterator[dict[str, Any]]:
    """The accepted records of ``folder`` in file and line order, each checked to lie in its shard."""
    for path in sorted((folder / "shards").glob("part-*.jsonl")):
        for record in read_jsonl(path):
            if shard.num_shards > 1 and not shard.owns(str(record["video_id"])):
                raise ValueError(f"{folder}: video {record['video_id']!r} is not in {shard.label()}: the folder "
                                 "does not belong to this split")
            yield record


def _check_out(out: Path, inputs: tuple[str, ...]) -> None:
    if str(out) in inputs:
        raise ValueError(f"--out {out} is one of the folders to merge: use a new folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file")
    if out.is_dir() and any(p.name != ".lock" for p in out.iterdir()):
        info = read_info(out) if (out / INFO_FILE).exists() else None
        if info is None or not info.merged_from or not set(info.merged_from) <= set(inputs):
            raise ValueError(f"--out {out} exists and is not empty: merge into a new folder (only a merge of the "
                             "same folders, or of more, may be rerun into it)")


def merge_outputs(folders: Sequence[str | os.PathLike], out: str | os.PathLike, *, shard_size: int = 1000,
                  dedup: bool = False) -> MergeResult:
    """Merge synthesis output folders into ``out`` (module docstring); ``ValueError`` (one line) on bad inputs."""
    paths = [Path(folder).resolve() for folder in folders]
    out = Path(out).resolve()
    inputs = tuple(str(path) for path in paths)
    check_inputs(paths)
    _check_out(out, inputs)
    with ExitStack() as stack:
        stack.enter_context(exclusive_output(out, "tempflex synth-merge"))
        for path in paths:
            stack.enter_context(exclusive_output(path, "tempflex synth run or merge"))
        base = check_inputs(paths)  # again, now that no run can change them
        infos = {path: _read_input(path) for path in paths}
        for path, info in infos.items():  # read every record before writing: one outside its shard raises
            deque(_records(path, info.shard), maxlen=0)
        write_text_atomic(out / INFO_FILE, OutputInfo(ShardSpec(), base.settings, inputs).to_json())
        result = _write_merged(infos, out, shard_size)
        result.num_shards = base.shard.num_shards
        if base.shard.num_shards > 1:
            given = {info.shard.index for info in infos.values()}
            result.missing_shards = [i for i in range(base.shard.num_shards) if i not in given]
        (out / "dedup.json").unlink(missing_ok=True)  # a stale one from an earlier merge would drop the wrong videos
        if dedup:
            from tempflex.synth.dedup import dedup_output

            result.dedup = dedup_output(out).counts()
        export_training(out)
        result.paths = write_report(build_report(out), out)
    return result


def _write_merged(infos: dict[Path, OutputInfo], out: Path, shard_size: int) -> MergeResult:
    """``out/shards/part-*.jsonl`` and ``out/rejected.jsonl`` from the inputs, each file written atomically."""
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    result, seen, chunk, parts = MergeResult(), set(), [], 0
    for folder, info in infos.items():
        for record in _records(folder, info.shard):
            video_id = str(record["video_id"])
            if video_id in seen:
                result.duplicates += 1
                continue
            seen.add(video_id)
            chunk.append(record)
            if len(chunk) == shard_size:
                write_jsonl_atomic(shard_dir / SHARD_PATTERN.format(parts), chunk)
                parts, chunk = parts + 1, []
    if chunk:
        write_jsonl_atomic(shard_dir / SHARD_PATTERN.format(parts), chunk)
        parts += 1
    for stale in sorted(shard_dir.glob("part-*.jsonl"))[parts:]:  # left by an earlier merge of fewer records
        stale.unlink()
    rejected: dict[str, dict[str, Any]] = {}
    for folder in infos:
        for record in read_jsonl(folder / "rejected.jsonl"):
            video_id = str(record["video_id"])
            if video_id not in seen:
                rejected.setdefault(video_id, record)
    write_jsonl_atomic(out / "rejected.jsonl", rejected.values())
    result.accepted, result.rejected = len(seen), len(rejected)
    return result
