"""Benchmarks by name: the built-ins of ``tempflex.eval.benchmarks`` and any registered with ``register``."""

from __future__ import annotations

from collections.abc import Callable

from tempflex.eval.base import Benchmark
from tempflex.eval.benchmarks import BUILTIN

REGISTRY: dict[str, Callable[[], Benchmark]] = dict(BUILTIN)


def register(name: str) -> Callable:
    """Decorator for a benchmark class (or factory) of another package: ``@register("mybench")``."""

    def add(factory: Callable[[], Benchmark]) -> Callable[[], Benchmark]:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = factory
        return factory

    return add


def available() -> list[str]:
    return sorted(REGISTRY)


def get_benchmark(name: str) -> Benchmark:
    """The benchmark ``name`` (case and dashes ignored); an unknown name is one line listing the known ones."""
    key = name.lower().replace("-", "_")
    if key not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]()
