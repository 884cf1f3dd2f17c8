"""A whole synthesis run and the report refresh, as functions a Python user calls the way ``tempflex synth`` does.

``run_synthesis(items, out, client)`` plans the videos not yet done (of one shard, ``sharding``), runs them through
an engine (the local thread pool or Ray, ``engines``) with a progress callback, and always (even on Ctrl-C or a
fatal API error) leaves ``OUT/train/`` and the report in step with the shards. ``refresh_report(out)`` redoes the export and report of an output folder, optionally de-duplicating first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tempflex.atomic import exclusive_output
from tempflex.synth.client import ChatClient
from tempflex.synth.engines import Engine, LocalEngine
from tempflex.synth.export import export_training
from tempflex.synth.manifest import VideoItem
from tempflex.synth.pipeline import Summary, SynthOptions, plan
from tempflex.synth.report import build_report, write_report
from tempflex.synth.sharding import OutputInfo, ShardSpec, answer_settings, claim_output
from tempflex.synth.store import Store

# progress(done, total, summary): once before the first video (done 0) and after every written video
Progress = Callable[[int, int, Summary], None]


def run_synthesis(
    items: Sequence[VideoItem],
    out: str | os.PathLike,
    client: ChatClient,
    options: SynthOptions | None = None,
    *,
    shard_size: int = 1000,
    progress: Progress | None = None,
    shard: ShardSpec | None = None,
    engine: Engine | None = None,
) -> Summary:
    """Synthesize the videos of ``items`` not yet in ``out``; a ``Summary`` with ``interrupted`` set on Ctrl-C.

    ``shard``: only the videos of that shard (``sharding.shard_of``); the folder records it, and a rerun into it
    with another shard or other answer settings is refused. ``engine``: ``engines.make_engine(...)``, the local
    thread pool by default. A fatal ``ApiError`` (bad key or model) propagates after the export and report are
    written.
    """
    options = options or SynthOptions()
    shard = shard or ShardSpec()
    info = OutputInfo(shard, answer_settings(client.model, options.tile_width, options.max_frames))
    with exclusive_output(Path(out), "tempflex synth run"):  # two runs on one folder would do every video twice
        claim_output(Path(out), info)
        return _run_locked(shard.select(items), Path(out), client, options, shard_size, progress,
                           engine or LocalEngine())


def _run_locked(items: Sequence[VideoItem], out: Path, client: ChatClient, options: SynthOptions, shard_size: int,
                progress: Progress | None, engine: Engine) -> Summary:
    store = Store(out, shard_size=shard_size)
    summary = Summary()
    todo = plan(items, store, options, summary)
    done = 0

    def advance(_outcome: object) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo), summary)

    if progress is not None:
        progress(0, len(todo), summary)
    try:
        engine.run(todo, client, store, options, summary, advance)
    finally:
        export_training(out)
        write_report(build_report(out), out)
    return summary


@dataclass
class RefreshResult:
    paths: dict[str, Path]  # report files by kind: json, md, png
    dedup: dict[str, int] | None = None  # counts of what de-duplication dropped; None without it


def refresh_report(
    out: str | os.PathLike, *, dedup: bool = False, prices: Mapping[str, float] | None = None
) -> RefreshResult:
    """Redo ``out``'s training export and report; with ``dedup``, de-duplicate videos and questions first.

    ``prices``: per 1M tokens, keys ``prompt`` and ``completion``, for the cost line of the report.
    """
    out = Path(out)
    if not (out / "shards").is_dir():
        raise ValueError(f"{out}: no shards/ folder: not an output folder of `tempflex synth`")
    counts = None
    if dedup:
        from tempflex.synth.dedup import dedup_output

        counts = dedup_output(out).counts()
    export_training(out)
    return RefreshResult(write_report(build_report(out, prices), out), counts)
