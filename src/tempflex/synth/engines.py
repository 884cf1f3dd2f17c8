"""Engines that run the planned videos of a synthesis run: ``local`` (a thread pool in this process) and ``ray``
(Ray Data across the CPUs of a machine or a cluster). Both use the same client, validation and repair
(``pipeline.prepare`` and ``pipeline.respond``) and write through the same ``Store``; only where the work runs
differs. An engine is a class with ``run``, registered by name; heavy engines are imported when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Protocol

from tempflex.synth.client import ChatClient
from tempflex.synth.manifest import VideoItem
from tempflex.synth.pipeline import Outcome, Runner, Summary, SynthOptions
from tempflex.synth.store import Store

# name -> "module:class"; the class takes keyword options (``address`` for ray) and implements ``Engine``
ENGINES = {
    "local": "tempflex.synth.engines:LocalEngine",
    "ray": "tempflex.synth.ray_engine:RayEngine",
}


class Engine(Protocol):
    def run(self, todo: Sequence[VideoItem], client: ChatClient, store: Store, options: SynthOptions,
            summary: Summary, on_done: Callable[[Outcome], None]) -> Summary:
        """Synthesize ``todo``, writing each finished video to ``store`` (``pipeline.write_outcome``) and calling
        ``on_done`` once per written video; Ctrl-C sets ``summary.interrupted``; a fatal ``ApiError`` propagates."""
        ...


class LocalEngine:
    """A thread pool in this process (``pipeline.Runner``): ``--concurrency`` videos in flight."""

    def run(self, todo: Sequence[VideoItem], client: ChatClient, store: Store, options: SynthOptions,
            summary: Summary, on_done: Callable[[Outcome], None]) -> Summary:
        return Runner(client, store, options, on_done=on_done).run(todo, summary)


def make_engine(name: str, *, address: str | None = None) -> Engine:
    """The engine registered as ``name``; ``address`` (a Ray cluster, e.g. ``auto``) is for ``ray`` only."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")
    module, cls = ENGINES[name].split(":")
    if name == "local":
        if address is not None:
            raise ValueError("--address is for --engine ray")
        return LocalEngine()
    return getattr(import_module(module), cls)(address=address)
