"""Reading the files benchmarks publish: parquet (Hugging Face releases), JSON lists and JSONL; finding videos."""

from __future__ import annotations

import json
from pathlib import Path


def read_table(path: Path) -> list[dict]:
    """Rows of a .parquet, .json (a list, or a dict of id -> row) or .jsonl file, as dicts."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path} needs pyarrow: pip install 'tempflex[eval]'") from None
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [{"_key": key, **value} if isinstance(value, dict) else {"_key": key, "value": value}
                for key, value in data.items()]
    if not isinstance(data, list):
        raise ValueError(f"{path} holds neither a list nor a mapping of rows")  # noqa: TRY004 (bad file: a user error)
    return data


def find_files(data: Path, patterns: tuple[str, ...], what: str) -> list[Path]:
    """The files under ``data`` matching the first pattern that matches any; an error naming ``what`` if none."""
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data} is not a folder (give --data the benchmark's folder)")
    for pattern in patterns:
        found = sorted(p for p in data.glob(pattern) if p.is_file())
        if found:
            return found
    raise FileNotFoundError(f"no {' or '.join(patterns)} under {data}: {what}")


def read_rows(data: Path, patterns: tuple[str, ...], what: str) -> list[dict]:
    rows: list[dict] = []
    for path in find_files(data, patterns, what):
        rows += read_table(path)
    return rows


def require(row: dict, keys: tuple[str, ...], source: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise ValueError(f"{source}: a row lacks {', '.join(missing)} (has {', '.join(sorted(map(str, row)))})")


def find_video(root: Path, name: str, suffixes: tuple[str, ...] = ("", ".mp4", ".MP4", ".mkv", ".webm", ".avi")) -> Path:
    """``root/name`` with the first suffix that exists (lmms-eval tries .mp4, .MP4, .mkv); an error if none."""
    for suffix in suffixes:
        path = Path(root) / f"{name}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"video {name!r} not found under {root}")
