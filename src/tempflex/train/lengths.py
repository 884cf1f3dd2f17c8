"""Media headers of a mixture, read once and cached beside the mixture file for every rank and every later run.

``ConversationDataset`` sizes each record from its media headers (pixel size, frame count) before training starts;
reading a header costs 1-16 ms a file (docs/benchmarks.md, Media size scan), and without a cache every rank of
every run read every header again. ``media_sizes(paths, cache)`` returns each path's ``MediaSize``, reading only
the headers the cache does not hold for the file as it is now:

- the cache is ``MIXTURE.media-sizes.json`` (``cache_for``): ``{"version": 1, "entries": {path: [bytes, mtime_ns,
  width, height, frames, fps]}}``; an entry counts only while the file's size and modification time match, so an
  edited or replaced file is read again;
- a process first checks the cache without a lock (one ``stat`` a file), so the ranks of a run that find it
  complete check it side by side; a process that finds entries missing takes an exclusive ``flock`` on
  ``MIXTURE.media-sizes.json.lock``, reads the missing headers and writes the cache, and processes that started at
  the same moment wait for that lock and then check the new cache, again without it;
- the cache is written atomically (``tempflex.atomic``) and only when something changed; an unreadable cache
  (cut-off, not JSON, another version) is rebuilt after a one-line warning, and a folder that cannot be written
  means a warning and a run without the cache, never a failed run.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tempflex.atomic import write_text_atomic
from tempflex.progress import tracked
from tempflex.samples import MediaSize, media_size

__all__ = ["CACHE_SUFFIX", "cache_for", "media_sizes"]

VERSION = 1
CACHE_SUFFIX = ".media-sizes.json"
PROGRESS_FROM = 1000  # headers to read before a progress bar is worth showing

Entry = list  # [bytes, mtime_ns, width, height, frames | None, fps | None]


def cache_for(mixture: str | Path) -> Path:
    """The cache file of a mixture file: beside it, named after it."""
    mixture = Path(mixture)
    return mixture.with_name(mixture.name + CACHE_SUFFIX)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def media_sizes(paths: Iterable[Path], cache: Path | None) -> dict[Path, MediaSize]:
    """``MediaSize`` of every path (duplicates read once), through the cache file ``cache`` (None: no cache).

    Raises what ``tempflex.samples.media_size`` raises for a missing or unreadable file."""
    unique = list(dict.fromkeys(Path(p) for p in paths))
    if cache is None:
        return {path: media_size(path) for path in _progress(unique)}
    while True:
        seen = _mtime(cache)
        sizes = _from_cache(unique, _read(cache, quiet=True))  # no lock: the other ranks check it side by side
        if sizes is not None:
            return sizes
        with _locked(cache) as held:
            if not held:
                return {path: media_size(path) for path in _progress(unique)}
            if _mtime(cache) == seen:  # nobody wrote the cache while this process waited for the lock
                return _through_cache(unique, cache)
        # another process (the first rank) wrote it meanwhile: check it again, without the lock


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _from_cache(paths: list[Path], entries: dict[str, Entry]) -> dict[Path, MediaSize] | None:
    """Every path's size from the cache, or None when an entry is missing or no longer matches its file."""
    sizes = {}
    for path in paths:
        stat, entry = _stat(path), entries.get(str(path))
        if stat is None or entry is None or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
            return None
        sizes[path] = MediaSize(*entry[2:])
    return sizes


def _through_cache(paths: list[Path], cache: Path) -> dict[Path, MediaSize]:
    """Under the lock: the headers the cache lacks are read, and the cache is rewritten with them (entries of files
    this run does not use are kept: another seed or mixture weight samples other records)."""
    entries = _read(cache)
    fresh: dict[str, Entry] = dict(entries)
    sizes: dict[Path, MediaSize] = {}
    missing: list[tuple[Path, os.stat_result | None]] = []
    for path in paths:
        stat, entry = _stat(path), entries.get(str(path))
        if stat is not None and entry is not None and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            sizes[path] = MediaSize(*entry[2:])
        else:
            missing.append((path, stat))
    read = 0
    try:
        for path, stat in _progress(missing):
            size = media_size(path)  # raises for a missing file, naming it
            stat = stat or path.stat()
            fresh[str(path)] = [stat.st_size, stat.st_mtime_ns, *size]
            sizes[path] = size
            read += 1
    finally:  # what was read before an error or an interrupt is kept for the next run
        if read or fresh.keys() != entries.keys():
            _write(cache, fresh)
    return sizes


def _write(cache: Path, entries: dict[str, Entry]) -> None:
    try:
        write_text_atomic(cache, json.dumps({"version": VERSION, "entries": entries}, separators=(",", ":")))
    except OSError as err:  # a read-only data folder: the run goes on, the next one reads the headers again
        warn(f"cannot write the media size cache {cache} ({err.strerror or err})")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None


def _read(cache: Path, quiet: bool = False) -> dict[str, Entry]:
    """The cache's entries; {} when there is none yet, and (after a one-line warning unless ``quiet``) when it cannot
    be used."""
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        if not quiet:
            warn(f"{cache} is unreadable ({type(err).__name__}); rebuilding it")
        return {}
    entries = data.get("entries") if isinstance(data, dict) and data.get("version") == VERSION else None
    if not isinstance(entries, dict) or not all(isinstance(e, list) and len(e) == 6 for e in entries.values()):
        if not quiet:
            warn(f"{cache} is not a version-{VERSION} media size cache; rebuilding it")
        return {}
    return entries


@contextmanager
def _locked(cache: Path) -> Iterator[bool]:
    """Hold an exclusive flock on ``cache``'s lock file, waiting while another process holds it; yields False
    (after a one-line warning) when the lock file cannot be made, e.g. in a read-only data folder."""
    import fcntl

    lock = cache.with_name(cache.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        warn(f"cannot lock the media size cache {lock} ({err.strerror or err}); reading every header")
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # releases the lock


def _progress(items: list) -> Iterable:
    return tracked(items, "reading media headers", show=len(items) >= PROGRESS_FROM)
