"""The root ``tempflex`` Typer app: its options and the verbs it registers.

To add a verb, write cli/<verb>.py and add one line here, its name in ``VERBS``. The module defines
``register(app: typer.Typer) -> None``, which adds its commands (``app.command("name")(fn)``) or its sub-app
(``app.add_typer(sub, name="name")``), and imports from ``cli.common`` only, never from another verb or this module.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Annotated

import typer

VERBS = (  # modules of tempflex.cli, registered in this order (`tempflex --help` lists commands in it)
    "tokens",
    "train",
    "ask",
    "data",
    "probes",
    "budget",
    "synth",
    "serve",
    "eval",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tempflex {metadata.version('tempflex')}")
        raise typer.Exit()


def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """TempFlex-VL: token-efficient, temporally aware video-language models."""


def build_app() -> typer.Typer:
    """The root app with every verb of ``VERBS`` registered."""
    root = typer.Typer(
        name="tempflex",
        help="TempFlex-VL: token-efficient, temporally aware video-language models.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    root.callback()(main)
    for verb in VERBS:
        import_module(f"tempflex.cli.{verb}").register(root)
    return root


app = build_app()
