"""The synthesis manifest: one video per line (JSONL or CSV) with optional metadata for the prompt.

JSONL: ``{"video": "a.mp4", "id": "a", "title": ..., "asr": ..., "activities": ..., "props": ..., "summary": ...,
"source": ...}``; CSV: a header row with the same column names. ``activities`` and ``props`` may be a string or a
list of strings (in CSV, ``;``-separated). Relative video paths are relative to the manifest's folder. A missing
id is a stable hash of the resolved path, so reruns of the same manifest name videos the same way.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class ManifestError(ValueError):
    """A manifest that cannot be used, with the line and field at fault."""


class ManifestEntry(BaseModel):
    """One manifest line as written by the user."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    video: str  # path to the video file, absolute or relative to the manifest
    id: str | None = None  # stable key of the video in the outputs; default: hash of the resolved path
    title: str | None = None
    asr: str | None = None  # transcript of the speech
    activities: list[str] | None = None
    props: list[str] | None = None  # objects / props seen in the video
    summary: str | None = None  # a brief summary of the video
    source: str | None = None  # dataset the video comes from, for per-source statistics

    @field_validator("video")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a non-empty path")
        return value

    @field_validator("id")
    @classmethod
    def _non_empty_id(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty (omit it to use the hash of the path)")
        return value

    @field_validator("activities", "props", mode="before")
    @classmethod
    def _as_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()] or None
        return value


class VideoItem(BaseModel):
    """A validated manifest entry: resolved path, final id and source."""

    model_config = ConfigDict(frozen=True)

    id: str
    video: str  # absolute path
    source: str
    title: str | None = None
    asr: str | None = None
    activities: tuple[str, ...] = ()
    props: tuple[str, ...] = ()
    summary: str | None = None


def path_id(path: str) -> str:
    """Stable id of a video: the first 16 hex digits of the SHA-1 of its resolved path."""
    return hashlib.sha1(path.encode("utf-8")).hexdigest()[:16]


def load_manifest(path: str | Path) -> list[VideoItem]:
    """Read and validate a manifest; raises ``ManifestError`` naming the line and field of the first problem."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path}: no such file")
    items: list[VideoItem] = []
    seen: dict[str, int] = {}
    for line_no, raw in _rows(path):
        entry = _validate(path, line_no, raw)
        item = _resolve(path.parent, entry)
        if item.id in seen:
            raise ManifestError(
                f"manifest {path} line {line_no}: duplicate id {item.id!r} (first on line {seen[item.id]})"
            )
        seen[item.id] = line_no
        items.append(item)
    if not items:
        raise ManifestError(f"manifest {path}: no videos")
    return items


def _rows(path: Path) -> Iterator[tuple[int, object]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for row in reader:  # line_num is the physical line just read (the header is line 1)
            yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        return
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest {path} line {line_no}: invalid JSON ({exc.msg})") from None


def _validate(path: Path, line_no: int, raw: object) -> ManifestEntry:
    if not isinstance(raw, dict):
        raise ManifestError(f"manifest {path} line {line_no}: expected a JSON object")
    try:
        return ManifestEntry.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "line"
        raise ManifestError(f"manifest {path} line {line_no}: {field}: {error['msg']}") from None


def _resolve(root: Path, entry: ManifestEntry) -> VideoItem:
    video = Path(entry.video).expanduser()
    resolved = str((video if video.is_absolute() else root / video).resolve())
    return VideoItem(
        id=entry.id or path_id(resolved),
        video=resolved,
        source=entry.source or "default",
        title=entry.title,
        asr=entry.asr,
        activities=tuple(entry.activities or ()),
        props=tuple(entry.props or ()),
        summary=entry.summary,
    )
