"""``tempflex data ...``: check a training mixture, make the tiny CPU training set."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(help="Training data: check mixtures, make the tiny CPU set.", no_args_is_help=True)


@data_app.command("check")
def check_cmd(
    mixture: Annotated[str, typer.Argument(help="Mixture file (YAML/JSON) naming the datasets.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report malformed records, placeholder mismatches, missing and unreadable media, with counts.

    Exits 0 when every record is usable, 1 when some are not, 2 when the mixture itself cannot be read.
    """
    from tempflex.cli import user_errors
    from tempflex.train.check import KINDS, check_mixture

    with user_errors():
        reports = check_mixture(mixture)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        table = Table(title=f"data check: {mixture}", title_justify="left")
        for name in ("dataset", "records", "ok", "malformed", "mismatch", "missing", "unreadable"):
            table.add_column(name, justify="left" if name == "dataset" else "right")
        for r in reports:
            table.add_row(r.name, str(r.records), str(r.ok), *(str(r.problems.get(k, 0)) for k in KINDS))
        console = Console(width=None if Console().is_terminal else 120)
        console.print(table)
        for r in reports:
            for kind, examples in r.examples.items():
                for example in examples:
                    console.print(f"[dim]{r.name}: {kind}: {example}[/dim]", highlight=False)
    if any(r.problems for r in reports):
        raise typer.Exit(1)


@data_app.command("make-tiny")
def make_tiny_cmd(
    out: Annotated[str, typer.Argument(help="Folder to write the tiny training set into.")] = "data/tiny",
) -> None:
    """Write the tiny real training set (photos, video clips, captions, QA, mixtures, tokenizer) for CPU runs."""
    from tempflex.cli import user_errors
    from tempflex.train.toy import make_tiny_data

    with user_errors():
        path = make_tiny_data(out)
    typer.echo(f"wrote {path}: mixtures in {path / 'mixtures'}, tokenizer in {path / 'tokenizer'}")
