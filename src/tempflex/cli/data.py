"""``tempflex data ...``: check a training mixture, make the tiny CPU training set."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tempflex.cli.common import console, print_json, user_errors

data_app = typer.Typer(help="Training data: check mixtures, make the tiny CPU set.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("check")
def check_cmd(
    mixture: Annotated[str, typer.Argument(help="Mixture file (YAML/JSON) naming the datasets.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Report malformed records, placeholder mismatches, missing and unreadable media, with counts.

    Exits 0 when every record is usable, 1 when some are not, 2 when the mixture itself cannot be read.
    """
    from tempflex.train.check import KINDS, check_mixture

    with user_errors():
        reports = check_mixture(mixture)
    if as_json:
        print_json([r.to_dict() for r in reports])
    else:
        table = Table(title=f"data check: {mixture}", title_justify="left")
        for name in ("dataset", "records", "ok", "malformed", "mismatch", "missing", "unreadable"):
            table.add_column(name, justify="left" if name == "dataset" else "right")
        for r in reports:
            table.add_row(r.name, str(r.records), str(r.ok), *(str(r.problems.get(k, 0)) for k in KINDS))
        out = console()
        out.print(table)
        for r in reports:
            for kind, examples in r.examples.items():
                for example in examples:
                    out.print(f"[dim]{r.name}: {kind}: {example}[/dim]", highlight=False)
    if any(r.problems for r in reports):
        raise typer.Exit(1)


@data_app.command("make-tiny")
def make_tiny_cmd(
    out: Annotated[str, typer.Argument(help="Folder to write the tiny training set into.")] = "data/tiny",
) -> None:
    """Write the tiny real training set (photos, video clips, captions, QA, mixtures, tokenizer) for CPU runs."""
    from tempflex.train.toy import make_tiny_data

    with user_errors():
        path = make_tiny_data(out)
    typer.echo(f"wrote {path}: mixtures in {path / 'mixtures'}, tokenizer in {path / 'tokenizer'}")
