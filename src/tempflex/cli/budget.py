"""``tempflex budget ...``: token-budget tools over a saved model (docs/budget.md).

Thin over ``tempflex.probes.run.optimize_saved_model``; bad options are one line on stderr with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import check_batch, console, parse_ints, print_json, user_errors

budget_app = typer.Typer(help="Token budgets: search how to spend a fixed number of visual tokens.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(budget_app, name="budget")


@budget_app.callback()
def budget_main() -> None:
    """Token budgets: search how to spend a fixed number of visual tokens."""


@budget_app.command("optimize")
def optimize_cmd(
    data: Annotated[Path, typer.Option("--data", help="A probe set made by `tempflex probes generate`.")],
    budget: Annotated[int, typer.Option("--budget", help="Visual tokens per video: frames x tokens per frame <= N.")],
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to score on (its JSONL must exist).")] = "val",
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N questions.")] = None,
    frames: Annotated[str, typer.Option("--frames", help="Frame counts to consider.")] = "4,8,16,32",
    tokens_per_frame: Annotated[str, typer.Option("--tokens-per-frame", help="Merged tokens per frame to consider.")] = "1,2,4",
    patience: Annotated[int, typer.Option("--patience", help="Steps without gain before a phase stops.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Questions per forward pass.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials and the best as JSON.")] = False,
) -> None:  # fmt: skip
    """FluxViT's Token Optimization: the best frames x tokens-per-frame split of BUDGET tokens on a probe split."""
    from tempflex.probes.run import optimize_saved_model

    with user_errors():
        check_batch(batch_size, limit)
        frame_options = parse_ints("--frames", frames)
        per_frame_options = parse_ints("--tokens-per-frame", tokens_per_frame)
        result = optimize_saved_model(model, data, budget, frame_options, per_frame_options, split=split,
                                      limit=limit, batch_size=batch_size, patience=patience)
    if as_json:
        print_json(result.to_json())
        return
    print_result(result, f"{model or 'tempflex-tiny'} on {data} [{split}], budget {budget}")


def print_result(result, title: str) -> None:
    from rich.table import Table

    best = result.best
    table = Table(title=f"Token Optimization: {title}")
    for column in ("#", "phase", "frames", "tokens/frame", "tokens", "accuracy"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for i, t in enumerate(result.trials, 1):
        mark = " *" if t is best else ""
        table.add_row(str(i), t.phase, str(t.frames), str(t.tokens_per_frame), str(t.tokens), f"{t.score:.3f}{mark}")
    console().print(table)
    typer.echo(f"best: {best.frames} frames x {best.tokens_per_frame} tokens per frame = {best.tokens} tokens, "
               f"accuracy {best.score:.3f} ({result.evaluations} evaluations)")
