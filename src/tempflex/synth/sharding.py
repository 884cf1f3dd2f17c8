"""Sharded synthesis: K machines share one manifest with no overlap, each writing its own output folder.

A video belongs to shard ``int(sha256(id)) mod K``: a stable hash of the video id (not Python's ``hash()``, which
changes per process), so every machine computes the same split from the same manifest, whatever its order.

Every output folder records how it was made in ``OUT/synth.json``: the shard (K and i; 1 and 0 unsharded) and the
settings that shape the answers (model, a fingerprint of the prompt, the frame-grid options). A rerun into the
same folder with another shard or other settings is refused, so one folder never mixes two splits or two
prompts; ``tempflex synth-merge`` reads the same file to refuse joining inconsistent folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tempflex.atomic import write_text_atomic
from tempflex.synth.manifest import VideoItem

INFO_FILE = "synth.json"


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard (0 .. num_shards - 1) of a video id: its SHA-256 as an integer, modulo the shard count."""
    return int.from_bytes(hashlib.sha256(video_id.encode("utf-8")).digest(), "big") % num_shards


@dataclass(frozen=True)
class ShardSpec:
    num_shards: int = 1  # K machines sharing the manifest
    index: int = 0  # this machine's shard, 0 <= index < num_shards

    def __post_init__(self) -> None:
        if self.num_shards < 1:
            raise ValueError(f"--num-shards must be >= 1 (got {self.num_shards})")
        if not 0 <= self.index < self.num_shards:
            raise ValueError(
                f"--shard-index must be in 0..{self.num_shards - 1} for --num-shards {self.num_shards} "
                f"(got {self.index})"
            )

    def select(self, items: Sequence[VideoItem]) -> list[VideoItem]:
        """The items of this shard, in manifest order."""
        return [item for item in items if shard_of(item.id, self.num_shards) == self.index]

    def owns(self, video_id: str) -> bool:
        return shard_of(video_id, self.num_shards) == self.index

    def label(self) -> str:
        return f"shard {self.index} of {self.num_shards}"


def prompt_fingerprint() -> str:
    """First 16 hex digits of the SHA-256 of the system prompt and the repair prompt: changes when they do."""
    from tempflex.synth.prompt import REPAIR, system_prompt

    return hashlib.sha256((system_prompt() + "\0" + REPAIR).encode("utf-8")).hexdigest()[:16]


def answer_settings(model: str, tile_width: int | None, max_frames: int | None) -> dict[str, Any]:
    """The settings that shape an answer; outputs made under different ones must not be mixed."""
    return {"model": model, "prompt": prompt_fingerprint(), "fps": 1.0, "tile_width": tile_width,
            "max_frames": max_frames}  # fmt: skip


@dataclass(frozen=True)
class OutputInfo:
    """The content of ``OUT/synth.json``."""

    shard: ShardSpec
    settings: dict[str, Any]
    merged_from: tuple[str, ...] = field(default=())  # input folders of `tempflex synth-merge` (resolved paths)

    def to_json(self) -> str:
        payload = {"version": 1, "shard": asdict(self.shard), "settings": self.settings}
        if self.merged_from:
            payload["merged_from"] = list(self.merged_from)
        return json.dumps(payload, indent=1)


def read_info(out: Path) -> OutputInfo | None:
    """``OUT/synth.json``, or None when the folder has none (new, or made before the file existed)."""
    path = Path(out) / INFO_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        shard = ShardSpec(int(data["shard"]["num_shards"]), int(data["shard"]["index"]))
        return OutputInfo(shard, dict(data["settings"]), tuple(data.get("merged_from", ())))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid {INFO_FILE} ({exc})") from None


def claim_output(out: Path, info: OutputInfo) -> None:
    """Record ``info`` in a new folder, or check that an existing folder was made the same way (one-line error)."""
    old = read_info(out)
    if old is None:
        write_text_atomic(Path(out) / INFO_FILE, info.to_json())
        return
    if old.shard != info.shard:
        raise ValueError(f"{out} holds {old.shard.label()} (--num-shards {old.shard.num_shards} --shard-index "
                         f"{old.shard.index}), not {info.shard.label()}: use another output folder")
    changed = settings_difference(old.settings, info.settings)
    if changed:
        raise ValueError(f"{out} was made with other settings ({changed}): use another output folder")


def settings_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'' when equal, else the first differing setting as ``key 'old' -> 'new'``."""
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key} {old.get(key)!r} -> {new.get(key)!r}"
    return ""
