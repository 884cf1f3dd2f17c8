"""De-duplication of a synthesis output: near-duplicate videos (perceptual frame hashes) and repeated questions.

Videos. A frame's hash is a 64-bit dHash: the frame in grey, box-resized to 9 x 8, one bit per horizontal neighbour
pair (left < right), bit i = row-major position i. It survives re-encoding and resizing (a half-size re-encoded
copy of bigbuckbunny lands 0 bits away, a copy cut 0.4 s later 1-9) and differs by ~20-44 bits between unrelated
videos. A video's signature is the list of its frame hashes at 1 fps (``load_video(path, fps=1.0)``: frames at
0.5 s, 1.5 s, ...). Flat frames (grey standard deviation below ``FLAT_STD``, e.g. black or fades) carry no
identity: they hash to ``FLAT`` (0) and never match anything.

Rule (``match_fraction``): for each time offset s in [-max_shift, max_shift] frames, count the informative frames
i of the shorter signature whose aligned frame i + s of the longer one is within ``max_distance`` bits; keep the best
offset and divide by the number of informative frames of the shorter signature. Two videos are near-duplicates when
that fraction is at least ``min_fraction``. The offsets absorb a small time shift (a trimmed start); comparing with
the shorter video makes a trimmed copy a duplicate of its source. Groups are the connected components of that
relation (union-find), so duplicates of duplicates share a group.

Candidates: comparing every pair is quadratic, so pairs are first proposed by an index of the four 16-bit quarters
of every informative frame hash; two frames within 3 bits always share a quarter (pigeonhole), and a re-encoded copy
has many such frames. ``exhaustive=True`` compares every pair instead (the reference the tests check against).

Questions. Text is normalised (Unicode NFKC, lower case, apostrophes deleted, other punctuation and symbols
made spaces, whitespace collapsed); a question whose
normalised text was already seen in the same video ("repeated_in_video") or in an earlier video
("repeated_across_videos", optional) is dropped. Earlier = shard file name order, then line order; the first is kept.

``dedup_output`` applies both to an output folder and writes ``OUT/dedup.json``; the shards are never modified.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from tempflex.atomic import write_text_atomic

Id = TypeVar("Id", bound=Hashable)

FLAT = 0  # hash of a frame without structure; never matches
FLAT_STD = 2.0  # grey-level standard deviation (0-255) of the 9 x 8 thumbnail below which a frame is flat
DEDUP_FILE = "dedup.json"
_APOSTROPHES = str.maketrans("", "", "'\u2019\u2018`")
_POPCOUNT = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------- frame hashes
def frame_hash(frame: np.ndarray) -> int:
    """64-bit dHash of one (H, W, 3) uint8 RGB frame; ``FLAT`` for a frame without structure."""
    grey = Image.fromarray(np.ascontiguousarray(frame)).convert("L").resize((9, 8), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float32)  # (8, 9)
    if pixels.std() < FLAT_STD:
        return FLAT
    bits = (pixels[:, 1:] > pixels[:, :-1]).reshape(-1)  # (64,) row-major
    value = int(np.packbits(bits, bitorder="little").view("<u8")[0])
    return value if value != FLAT else 1  # a structured frame must not alias the flat marker


def video_signature(path: str | os.PathLike, fps: float = 1.0, max_frames: int | None = None) -> list[int]:
    """Frame hashes of ``path`` sampled at ``fps`` (1 fps: one hash per second of video)."""
    from tempflex.video import load_video  # decoding stack loads only when hashing

    video = load_video(path, fps=fps, max_frames=max_frames)
    frames = video.frames.numpy()  # (T, H, W, 3) uint8
    return [frame_hash(frame) for frame in frames]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _distance_matrix(a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    """(len(a), len(b)) Hamming distances."""
    x = np.asarray(a, dtype=np.uint64)[:, None] ^ np.asarray(b, dtype=np.uint64)[None, :]  # (A, B)
    return _POPCOUNT[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.int32)  # (A, B)


# ---------------------------------------------------------------------------------------------------- video rule
def match_fraction(a: Sequence[int], b: Sequence[int], max_distance: int = 10, max_shift: int = 1) -> float:
    """Best over offsets |s| <= max_shift of the share of the shorter signature's informative frames matched."""
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    informative = [i for i, h in enumerate(short) if h != FLAT]
    if not informative or not long_:
        return 0.0
    dist = _distance_matrix(short, long_)  # (S, L)
    best = 0
    for shift in range(-max_shift, max_shift + 1):
        hits = sum(
            1
            for i in informative
            if 0 <= i + shift < len(long_) and long_[i + shift] != FLAT and dist[i, i + shift] <= max_distance
        )
        best = max(best, hits)
    return best / len(informative)


def _candidate_pairs(signatures: Mapping[Id, Sequence[int]]) -> set[tuple[int, int]]:
    """Pairs of positions (in ``signatures`` order) sharing a 16-bit quarter of an informative frame hash."""
    buckets: dict[tuple[int, int], set[int]] = defaultdict(set)
    for pos, hashes in enumerate(signatures.values()):
        for h in hashes:
            if h != FLAT:
                for quarter in range(4):
                    buckets[(quarter, (h >> (16 * quarter)) & 0xFFFF)].add(pos)
    pairs: set[tuple[int, int]] = set()
    for members in buckets.values():
        ordered = sorted(members)
        pairs.update((x, y) for i, x in enumerate(ordered) for y in ordered[i + 1 :])
    return pairs


def near_duplicate_groups(
    signatures: Mapping[Id, Sequence[int]],
    max_distance: int = 10,
    min_fraction: float = 0.6,
    max_shift: int = 1,
    exhaustive: bool = False,
) -> list[list[Id]]:
    """Groups (size >= 2) of near-duplicate videos, by the rule of the module docstring.

    Members keep the order of ``signatures``; groups are ordered by their first member.
    """
    ids = list(signatures)
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    n = len(ids)
    pairs = (
        ((i, j) for i in range(n) for j in range(i + 1, n))
        if exhaustive
        else sorted(_candidate_pairs(signatures))
    )
    for i, j in pairs:
        if root(i) == root(j):
            continue
        if match_fraction(signatures[ids[i]], signatures[ids[j]], max_distance, max_shift) >= min_fraction:
            parent[max(root(i), root(j))] = min(root(i), root(j))
    groups: dict[int, list[Id]] = defaultdict(list)
    for i, video_id in enumerate(ids):
        groups[root(i)].append(video_id)
    return [members for _, members in sorted(groups.items()) if len(members) > 1]


def keep_one_per_group(
    groups: Iterable[Sequence[Id]], signatures: Mapping[Id, Sequence[int]]
) -> tuple[list[Id], dict[Id, Id]]:
    """(kept ids, {dropped id: kept id}). Kept: the longest signature (most seconds), ties to the smallest str(id)."""
    kept: list[Id] = []
    dropped: dict[Id, Id] = {}
    for group in groups:
        winner = min(group, key=lambda v: (-len(signatures[v]), str(v)))
        kept.append(winner)
        dropped.update({v: winner for v in group if v != winner})
    return kept, dropped


# ---------------------------------------------------------------------------------------------------- questions
def normalize_question(text: str) -> str:
    """NFKC, lower case, apostrophes deleted ("what's" = "whats"), other punctuation and symbols made spaces,
    whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    kept = "".join(" " if unicodedata.category(c)[0] in "PSZ" else c for c in text)
    return " ".join(kept.split())


@dataclass(frozen=True)
class DroppedQuestion:
    video_id: str
    index: int  # position in the record's "qa" list
    reason: str  # "repeated_in_video" | "repeated_across_videos"
    first: tuple[str, int]  # (video_id, index) of the kept occurrence


def repeated_questions(
    records: Iterable[Mapping[str, Any]], across_videos: bool = True
) -> list[DroppedQuestion]:
    """Questions to drop from ``records`` (in output order): repeats within a video, and across videos if asked."""
    seen: dict[str, tuple[str, int]] = {}
    dropped: list[DroppedQuestion] = []
    for record in records:
        video_id = str(record["video_id"])
        local: dict[str, int] = {}
        for index, pair in enumerate(record.get("qa", [])):
            key = normalize_question(str(pair.get("question", "")))
            if key in local:
                dropped.append(DroppedQuestion(video_id, index, "repeated_in_video", (video_id, local[key])))
            elif across_videos and key in seen:
                dropped.append(DroppedQuestion(video_id, index, "repeated_across_videos", seen[key]))
            else:
                local[key] = index
        for key, index in local.items():
            seen.setdefault(key, (video_id, index))
    return dropped


# ---------------------------------------------------------------------------------------------------- output dir
def iter_records(out_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Accepted records of ``OUT/shards/part-*.jsonl`` in file-name then line order (blank lines skipped)."""
    for shard in sorted(Path(out_dir, "shards").glob("part-*.jsonl")):
        with shard.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


@dataclass
class DedupResult:
    settings: dict[str, Any]  # the rule's parameters
    groups: list[list[str]]  # near-duplicate groups of video ids
    dropped_videos: dict[str, str]  # dropped id -> kept id of its group
    unhashed: dict[str, str]  # video id -> why it has no signature (it is kept)
    dropped_questions: list[DroppedQuestion] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        reasons = [q.reason for q in self.dropped_questions]
        return {
            "videos_dropped": len(self.dropped_videos),
            "questions_repeated_in_video": reasons.count("repeated_in_video"),
            "questions_repeated_across_videos": reasons.count("repeated_across_videos"),
        }


def _signatures(
    records: Sequence[Mapping[str, Any]], signature_of: Callable[[str], list[int]], video_root: Path | None
) -> tuple[dict[str, list[int]], dict[str, str]]:
    signatures: dict[str, list[int]] = {}
    unhashed: dict[str, str] = {}
    for record in records:
        video_id, path = str(record["video_id"]), Path(record["video"])
        if video_root is not None and not path.is_absolute():
            path = video_root / path
        try:
            signatures[video_id] = signature_of(str(path))
        except (OSError, ValueError) as error:  # VideoDecodeError is a ValueError
            unhashed[video_id] = f"{type(error).__name__}: {error}"
    return signatures, unhashed


def dedup_output(
    out_dir: str | os.PathLike,
    *,
    video_root: str | os.PathLike | None = None,
    signature_of: Callable[[str], list[int]] = video_signature,
    max_distance: int = 10,
    min_fraction: float = 0.6,
    max_shift: int = 1,
    across_videos: bool = True,
) -> DedupResult:
    """Find near-duplicate videos and repeated questions in ``out_dir``'s shards and write ``OUT/dedup.json``.

    ``video_root``: folder that relative "video" paths are relative to (default: the working directory).
    ``signature_of``: path -> frame hashes (default: decode at 1 fps). Videos that fail to decode are kept and
    listed under "unhashed". Questions of dropped videos are not counted as repeats of anything.
    """
    records = list(iter_records(out_dir))
    root = Path(video_root) if video_root is not None else None
    signatures, unhashed = _signatures(records, signature_of, root)
    groups = near_duplicate_groups(signatures, max_distance, min_fraction, max_shift)
    _, dropped_videos = keep_one_per_group(groups, signatures)
    remaining = [r for r in records if str(r["video_id"]) not in dropped_videos]
    settings = {
        "hash": "dhash64",
        "fps": 1.0,
        "max_distance": max_distance,
        "min_fraction": min_fraction,
        "max_shift": max_shift,
        "across_videos": across_videos,
    }
    result = DedupResult(
        settings, groups, dropped_videos, unhashed, repeated_questions(remaining, across_videos)
    )
    write_dedup(result, out_dir)
    return result


def write_dedup(result: DedupResult, out_dir: str | os.PathLike) -> Path:
    """Write ``OUT/dedup.json`` atomically (temporary file + rename)."""
    payload = {
        "version": 1,
        "settings": result.settings,
        "counts": result.counts(),
        "videos": {
            "groups": result.groups,
            "dropped": [
                {"video_id": v, "reason": "near_duplicate", "kept": k}
                for v, k in result.dropped_videos.items()
            ],
            "unhashed": result.unhashed,
        },
        "questions": {"dropped": [asdict(q) for q in result.dropped_questions]},
    }
    path = Path(out_dir, DEDUP_FILE)
    write_text_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False))
    return path


def load_dropped(out_dir: str | os.PathLike) -> tuple[set[str], set[tuple[str, int]]]:
    """(dropped video ids, dropped (video_id, question index)) from ``OUT/dedup.json``; empty sets if absent."""
    path = Path(out_dir, DEDUP_FILE)
    if not path.exists():
        return set(), set()
    payload = json.loads(path.read_text(encoding="utf-8"))
    videos = {str(d["video_id"]) for d in payload["videos"]["dropped"]}
    questions = {(str(d["video_id"]), int(d["index"])) for d in payload["questions"]["dropped"]}
    return videos, questions
