"""`tempflex data check MIXTURE`: find what would break a training run, without loading a model.

For every dataset of the mixture: records read, records usable, and the problems by kind, each with a few
examples: ``malformed`` (bad JSON, bad roles or turn order, empty turns), ``placeholder_mismatch`` (the turns'
``<image>``/``<video>`` placeholders do not match the media listed), ``missing_media`` (a media file that does not
exist) and ``unreadable_media`` (a file whose header does not read as an image or a video).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tempflex.samples import media_size
from tempflex.train.records import PlaceholderError, RecordError, load_mixture, parse_record, read_raw

KINDS = ("malformed", "placeholder_mismatch", "missing_media", "unreadable_media")
MAX_EXAMPLES = 5


@dataclass
class DatasetReport:
    name: str
    path: str
    records: int = 0
    ok: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, message: str) -> None:
        self.problems[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(message)

    def to_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "records": self.records, "ok": self.ok,
                "problems": {k: self.problems.get(k, 0) for k in KINDS}, "examples": self.examples}


def _kind(err: RecordError) -> str:
    return "placeholder_mismatch" if isinstance(err, PlaceholderError) else "malformed"


def _media_problem(path: Path, seen: dict[Path, str | None]) -> str | None:
    """None if the file reads, else its problem kind; each file is checked once."""
    if path not in seen:
        if not path.is_file():
            seen[path] = "missing_media"
        else:
            try:
                media_size(path)
                seen[path] = None
            except (ValueError, OSError):
                seen[path] = "unreadable_media"
    return seen[path]


def check_dataset(spec, seen: dict[Path, str | None]) -> DatasetReport:
    report = DatasetReport(spec.name, str(spec.path))
    for position, raw in read_raw(spec.path):
        report.records += 1
        try:
            record = parse_record(raw, spec.media_root, spec.name, position)
        except RecordError as err:
            report.add(_kind(err), f"record {position}: {err}")
            continue
        problems = [(p, _media_problem(p, seen)) for p in record.images + record.videos]
        bad = [(p, kind) for p, kind in problems if kind]
        for path, kind in bad:
            report.add(kind, f"record {position}: {path}")
        report.ok += not bad
    return report


def check_mixture(path: str | Path) -> list[DatasetReport]:
    """One report per dataset of the mixture at ``path``."""
    mixture = load_mixture(path)
    for spec in mixture.datasets:  # a mixture naming a file that is not there cannot be read at all
        if not spec.path.is_file():
            raise FileNotFoundError(f"{path}: dataset {spec.name!r}: data file {spec.path} not found")
    seen: dict[Path, str | None] = {}
    return [check_dataset(spec, seen) for spec in mixture.datasets]
