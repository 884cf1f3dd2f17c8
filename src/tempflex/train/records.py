"""LLaVA-style conversation records and mixture files.

A record (one JSON object, in a ``.json`` array or one per line of a ``.jsonl`` file)::

    {"id": "x1", "image": "imgs/a.jpg",            # or a list of paths; or "video": "clips/b.mp4" (or a list)
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                       {"from": "gpt", "value": "A cat."}]}

Roles ``human``/``user``, ``gpt``/``assistant`` and an optional leading ``system``; user and assistant alternate,
starting with the user and ending with the assistant. Media paths are relative to the dataset's ``media_root``.
As in LLaVA, a record with media but no placeholder at all gets them prepended to its first user turn; any
other mismatch between placeholders and media is an error.

A mixture file (YAML or JSON) names datasets with a sampling weight (a multiple of the dataset's size: 0.5 takes
half of it, 2 takes it twice) or an absolute count, and their media roots (relative paths are relative to the
mixture file)::

    datasets:
      - {name: captions, path: captions.jsonl, media_root: media, weight: 1.0}
      - {name: qa, path: qa.json, media_root: media, count: 5000}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tempflex.processing import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, placeholder_mismatch
from tempflex.textfiles import read_text

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class RecordError(ValueError):
    """A record that cannot be used, with the reason."""


class PlaceholderError(RecordError):
    """The record's ``<image>``/``<video>`` placeholders do not match its media."""


@dataclass(frozen=True)
class Turn:
    role: str  # "system", "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Record:
    """One training conversation with its media as absolute paths."""

    id: str
    source: str  # the dataset's name in the mixture
    turns: tuple[Turn, ...]
    images: tuple[Path, ...] = ()
    videos: tuple[Path, ...] = ()

    def messages(self) -> list[dict]:
        return [{"role": t.role, "content": t.text} for t in self.turns]


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str  # shown in reports and logs
    path: Path  # .json (array of records) or .jsonl
    media_root: Path | None = None  # media paths are relative to this; default: the data file's folder
    weight: float | None = Field(default=None, gt=0)  # multiple of the dataset size to sample
    count: int | None = Field(default=None, gt=0)  # or an absolute number of samples

    @model_validator(mode="after")
    def _one_rate(self) -> DatasetSpec:
        if self.weight is not None and self.count is not None:
            raise ValueError("give weight or count, not both")
        return self


class Mixture(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[DatasetSpec] = Field(min_length=1)


def load_mixture(path: str | Path) -> Mixture:
    """Read and validate a mixture file; relative paths become relative to the file. Errors name the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mixture file {path} not found")
    try:
        raw = yaml.safe_load(read_text(path, "mixture file"))
        mixture = Mixture.model_validate(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML/JSON ({' '.join(str(err).split())})") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']}") from None
    for spec in mixture.datasets:
        spec.path = (path.parent / spec.path).resolve()
        root = spec.media_root if spec.media_root is not None else spec.path.parent
        spec.media_root = (path.parent / root).resolve()
    return mixture


def read_raw(path: Path) -> Iterator[tuple[int, dict | str]]:
    """(position, record) for every record of a .json/.jsonl file; a string instead of a dict is a parse error."""
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    if path.suffix == ".jsonl":
        with path.open("rb") as lines:
            for n, raw in enumerate(lines, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield n, f"line {n}: not UTF-8 text"
                    continue
                if line.strip():
                    yield n, _loads(line, f"line {n}")
        return
    data = _loads(read_text(path, "data file"), "file")
    if not isinstance(data, list):
        yield 0, f"{path.name} must hold a JSON array of records" if isinstance(data, dict) else data
        return
    yield from enumerate(data)


def _loads(text: str, where: str) -> dict | str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return f"{where}: invalid JSON ({err.msg})"
    return value if isinstance(value, (dict, list)) else f"{where}: a record must be a JSON object"


def _paths(raw: dict, key: str, root: Path) -> tuple[Path, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in values):
        raise RecordError(f"'{key}' must be a path or a list of paths")
    return tuple(root / v for v in values)


def parse_record(raw: dict | str, media_root: Path, source: str, position: int) -> Record:
    """Validate one raw record; raises ``RecordError`` with the reason."""
    if isinstance(raw, str):
        raise RecordError(raw)
    if not isinstance(raw, dict):
        raise RecordError("a record must be a JSON object")
    turns = _turns(raw.get("conversations"))
    images, videos = _paths(raw, "image", media_root), _paths(raw, "video", media_root)
    turns = _place_media(turns, len(images), len(videos))
    return Record(str(raw.get("id", f"{source}:{position}")), source, turns, images, videos)


def _turns(conversations: object) -> tuple[Turn, ...]:
    if not isinstance(conversations, list) or not conversations:
        raise RecordError("'conversations' must be a non-empty list of turns")
    turns = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise RecordError(f"turn {i} must be an object with a string 'value'")
        role = ROLES.get(str(turn.get("from", turn.get("role"))))
        if role is None:
            raise RecordError(f"turn {i} has unknown role {turn.get('from', turn.get('role'))!r}")
        if not turn["value"].strip():
            raise RecordError(f"turn {i} is empty")
        turns.append(Turn(role, turn["value"]))
    body = turns[1:] if turns[0].role == "system" else turns
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    if [t.role for t in body] != expected[: len(body)] or not body or body[-1].role != "assistant":
        raise RecordError("turns must alternate user/assistant, starting with user and ending with assistant")
    return tuple(turns)


def _place_media(turns: tuple[Turn, ...], n_images: int, n_videos: int) -> tuple[Turn, ...]:
    for placeholder, n in ((IMAGE_PLACEHOLDER, n_images), (VIDEO_PLACEHOLDER, n_videos)):
        found = sum(t.text.count(placeholder) for t in turns)
        in_answers = sum(t.text.count(placeholder) for t in turns if t.role != "user")
        if in_answers:
            raise PlaceholderError(f"{placeholder} placeholders must be in user turns, found {in_answers} elsewhere")
        if found == 0 and n:
            first = next(i for i, t in enumerate(turns) if t.role == "user")
            text = (placeholder + "\n") * n + turns[first].text
            turns = turns[:first] + (Turn("user", text),) + turns[first + 1 :]
        elif found != n:
            raise PlaceholderError(placeholder_mismatch(placeholder, found, n))
    return turns
