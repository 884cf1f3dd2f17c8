"""What every verb of the command line shares: user errors, consoles, JSON output and small option parsers.

Verb modules import from here only (never from each other or from ``cli.app``), so the CLI has no import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Bad sizes or options, missing or unreadable files. Later verbs' own errors (e.g. VideoDecodeError) should subclass
# one of these or be added here.
USER_ERRORS = (ValueError, OSError)
CONSOLE_WIDTH = 120  # when stdout is a file or pipe: wide enough for the tables, stable for docs
INTERRUPTED = "error: interrupted; rerun the same command to finish the remaining videos"


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error into ``error: <one line>`` on stderr and exit code 2, with no traceback.

    Use as ``with user_errors():`` around a verb's body (or as a decorator); programming errors still raise.
    """
    try:
        yield
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def exit_interrupted() -> None:
    """Ctrl-C during a resumable run: one line on stderr and exit code 130."""
    typer.echo(INTERRUPTED, err=True)
    raise typer.Exit(130)


def console() -> Console:
    """A console on stdout, ``CONSOLE_WIDTH`` wide when stdout is not a terminal."""
    out = Console()
    if not out.is_terminal:
        out.width = CONSOLE_WIDTH
    return out


def stderr_console() -> Console:
    """A console on stderr, for progress bars that must not mix with the output."""
    return Console(stderr=True)


class ProgressBar:
    """A rich bar on stderr for a library progress callback ``(done, total)``; started at the first call (after any
    worker processes have forked), stopped by ``close()`` or at the end of a ``with`` block. ``status`` shows the
    callback's third argument; ``elapsed`` the time so far instead of the time left (steps of unequal length), which
    keeps a long single step visibly alive."""

    def __init__(self, label: str, *, transient: bool = False, status: bool = False, elapsed: bool = False) -> None:
        self.label, self.transient, self.status, self.elapsed = label, transient, status, elapsed
        self.progress: Progress | None = None

    def __call__(self, done: int, total: int, status: str = "") -> None:
        if self.progress is None:
            columns = [TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            if self.status:
                columns.insert(3, TextColumn("{task.fields[status]}"))
            if self.elapsed:
                columns[-1] = TimeElapsedColumn()
            self.progress = Progress(*columns, console=stderr_console(), transient=self.transient)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total, status=status)
        self.progress.update(self.task, completed=done, total=total, status=status)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self) -> ProgressBar:  # noqa: PYI034 - py3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_json(data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON on stdout (``indent=None``: one line)."""
    typer.echo(json.dumps(data, indent=indent))


def parse_ints(name: str, text: str) -> list[int]:
    """``4,8,16`` as [4, 8, 16]; anything else is a one-line error naming the option."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name} takes comma-separated integers like 4,8,16, got {text!r}") from None


def check_batch(batch_size: int, limit: int | None) -> None:
    """``--batch-size`` and ``--limit`` (when given) are at least 1."""
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError("--batch-size and --limit must be >= 1")
