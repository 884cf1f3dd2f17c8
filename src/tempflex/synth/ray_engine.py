"""The Ray engine of ``tempflex synth``: Ray Data across the CPUs of one machine or a cluster (``--address auto``).

Data flow (one row per video, strings only, so rows travel as Arrow):
    manifest items (JSON) -> ``map_batches(prepare_batch)``: tasks over CPUs, frames -> 3x3 grids -> chat messages
    -> ``map_batches(Responder)``: an actor pool, each actor holding one ``ChatClient`` built from a ``ClientSpec``,
       the request with the same retries, validation and one repair as the local engine (``pipeline.respond``)
    -> rows streamed back to the driver, which appends each one to the project's ``Store`` (its done-set).

Ray's writers cannot resume per row, so Ray Data writes nothing: the driver does, and a rerun skips every id
already done, exactly as with the local engine. Ray restarts a dead actor and re-runs its lost task
(``max_restarts=-1``, ``max_task_retries=-1``, Ray Data's defaults for actor pools); a video that thereby arrives
twice is written once (``pipeline.write_outcome``). Ray is imported only here, when the engine is made.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from tempflex.synth.client import ApiError, ChatClient, ClientSpec
from tempflex.synth.manifest import VideoItem
from tempflex.synth.pipeline import Outcome, Summary, SynthOptions, prepare, respond, write_outcome
from tempflex.synth.store import Store

INSTALL_HINT = "--engine ray needs Ray: pip install 'tempflex[ray]'"
CALLS_PER_ACTOR = 8  # requests one actor keeps in flight (threads); --concurrency above it adds actors
MAX_BLOCKS = 4096  # a task's unit of work (and of retry) is a block: one video per block up to this many


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return ray


def prepare_batch(batch: dict[str, np.ndarray], options: dict[str, Any]) -> dict[str, list[str]]:
    """Map over CPUs: items (JSON) -> their chat messages (JSON), or their rejection record (an undecodable video)."""
    synth_options = SynthOptions(**options)
    rows: dict[str, list[str]] = {"item": [], "messages": [], "rejection": []}
    for raw in batch["item"]:
        prepared = prepare(VideoItem.model_validate_json(str(raw)), synth_options)
        rejected = isinstance(prepared, Outcome)
        rows["item"].append(str(raw))
        rows["messages"].append("" if rejected else json.dumps(prepared))
        rows["rejection"].append(json.dumps(prepared.record) if rejected else "")
    return rows


class Responder:
    """An actor of the pool: one ``ChatClient`` (thread-safe) for all its calls; a fatal ``ApiError`` (bad key or
    model, unreachable server) comes back as a row with ``fatal`` set, so the driver stops the run with it."""

    def __init__(self, spec: ClientSpec) -> None:
        self.client = spec.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = {"item": [], "accepted": [], "record": [], "usage": [], "fatal": []}
        for raw, messages, rejection in zip(batch["item"], batch["messages"], batch["rejection"]):
            item, fatal = VideoItem.model_validate_json(str(raw)), ""
            if rejection:
                outcome = Outcome(item, json.loads(str(rejection)), False)
            else:
                try:
                    outcome = respond(item, json.loads(str(messages)), self.client)
                except ApiError as exc:
                    outcome, fatal = Outcome(item, {}, False), str(exc)
            rows["item"].append(str(raw))
            rows["accepted"].append(outcome.accepted)
            rows["record"].append(json.dumps(outcome.record, ensure_ascii=False))
            rows["usage"].append(json.dumps(outcome.usage))
            rows["fatal"].append(fatal)
        return rows


def _outcome(row: dict[str, Any]) -> Outcome:
    if row["fatal"]:
        raise ApiError(str(row["fatal"]), fatal=True)
    prompt, completion = json.loads(row["usage"])
    item = VideoItem.model_validate_json(row["item"])
    return Outcome(item, json.loads(row["record"]), bool(row["accepted"]), (int(prompt), int(completion)))


class RayEngine:
    """Runs a synthesis on Ray Data; ``address``: a running cluster (``auto``, ``ray://host:10001``) or None for
    a Ray on this machine (started here and stopped at the end, unless one is already initialised)."""

    def __init__(self, address: str | None = None) -> None:
        self.ray = _import_ray()
        self.address = address

    def run(self, todo: Sequence[VideoItem], client: ChatClient, store: Store, options: SynthOptions,
            summary: Summary, on_done: Callable[[Outcome], None]) -> Summary:
        if not todo:
            return summary
        started = self._connect()
        try:
            for row in self._dataset(todo, client, options).iter_rows():
                outcome = _outcome(row)
                if write_outcome(store, outcome, summary):
                    on_done(outcome)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            if started:
                self.ray.shutdown()
        summary.pending += sum(1 for item in todo if item.id not in store.done)
        return summary

    def _connect(self) -> bool:
        """Initialise Ray unless it already is; True if this call did (and so must shut it down)."""
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # our progress bar replaces its log lines and bars
        if self.ray.is_initialized():
            return False
        self.ray.init(address=self.address, logging_level=logging.WARNING, include_dashboard=False)
        return True

    def _dataset(self, todo: Sequence[VideoItem], client: ChatClient, options: SynthOptions) -> Any:
        data = self.ray.data
        data.DataContext.get_current().enable_progress_bars = False
        actors = math.ceil(options.concurrency / CALLS_PER_ACTOR)
        calls = math.ceil(options.concurrency / actors)
        items = [{"item": item.model_dump_json()} for item in todo]
        dataset = data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        dataset = dataset.map_batches(prepare_batch, batch_size=1, batch_format="numpy", num_cpus=1,
                                      fn_kwargs={"options": asdict(options)})
        return dataset.map_batches(
            Responder, batch_size=1, batch_format="numpy", num_cpus=0,  # actors wait on the network, not a CPU
            compute=data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=calls),
            fn_constructor_kwargs={"spec": ClientSpec.of(client)},
        )
