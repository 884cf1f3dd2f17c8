"""``tempflex budget ...``: token-budget tools over a saved model (docs/budget.md).

Thin over ``tempflex.budget.optimize``; bad options are one line on stderr with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

budget_app = typer.Typer(help="Token budgets: search how to spend a fixed number of visual tokens.",
                         no_args_is_help=True)


@budget_app.callback()
def budget_main() -> None:
    """Token budgets: search how to spend a fixed number of visual tokens."""


def parse_ints(name: str, text: str) -> list[int]:
    """``4,8,16`` as [4, 8, 16]; anything else is a one-line error naming the option."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name} takes comma-separated integers like 4,8,16, got {text!r}") from None


@budget_app.command("optimize")
def optimize_cmd(
    model: Annotated[Path, typer.Option("--model", help="A saved TempFlex model.")],
    data: Annotated[Path, typer.Option("--data", help="A probe set made by `tempflex probes generate`.")],
    budget: Annotated[int, typer.Option("--budget", help="Visual tokens per video: frames x tokens per frame <= N.")],
    split: Annotated[str, typer.Option("--split", help="Split to score on (its JSONL must exist).")] = "val",
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N questions.")] = None,
    frames: Annotated[str, typer.Option("--frames", help="Frame counts to consider.")] = "4,8,16,32",
    tokens_per_frame: Annotated[str, typer.Option("--tokens-per-frame", help="Merged tokens per frame to consider.")] = "1,2,4",
    patience: Annotated[int, typer.Option("--patience", help="Steps without gain before a phase stops.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Questions per forward pass.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials and the best as JSON.")] = False,
) -> None:  # fmt: skip
    """FluxViT's Token Optimization: the best frames x tokens-per-frame split of BUDGET tokens on a probe split."""
    import json

    from tempflex.ask import Asker
    from tempflex.budget.optimize import check_space, probe_scorer, token_optimization
    from tempflex.cli import user_errors

    with user_errors():
        if batch_size < 1 or (limit is not None and limit < 1):
            raise ValueError("--batch-size and --limit must be >= 1")
        frame_options = parse_ints("--frames", frames)
        per_frame_options = parse_ints("--tokens-per-frame", tokens_per_frame)
        check_space(budget, frame_options, per_frame_options)  # before the model loads
        asker = Asker(model)
        score = probe_scorer(asker.model, asker.processor, data, split=split, limit=limit, batch_size=batch_size)
        result = token_optimization(score, budget, frame_options, per_frame_options, patience=patience)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    print_result(result, f"{asker.model_dir} on {data} [{split}], budget {budget}")


def print_result(result, title: str) -> None:
    from rich.table import Table

    from tempflex.cli import _console

    best = result.best
    table = Table(title=f"Token Optimization: {title}")
    for column in ("#", "phase", "frames", "tokens/frame", "tokens", "accuracy"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for i, t in enumerate(result.trials, 1):
        mark = " *" if t is best else ""
        table.add_row(str(i), t.phase, str(t.frames), str(t.tokens_per_frame), str(t.tokens), f"{t.score:.3f}{mark}")
    _console().print(table)
    typer.echo(f"best: {best.frames} frames x {best.tokens_per_frame} tokens per frame = {best.tokens} tokens, "
               f"accuracy {best.score:.3f} ({result.evaluations} evaluations)")
