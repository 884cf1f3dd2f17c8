"""A rich progress bar over a library loop, on stderr: stdout may carry a command's JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def tracked(items: Iterable[T], description: str, *, show: bool = True, transient: bool = True) -> Iterable[T]:
    """``items``, with a bar on stderr while they are consumed when ``show`` (else ``items`` as they are)."""
    if not show:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=description, transient=transient, console=Console(stderr=True))
