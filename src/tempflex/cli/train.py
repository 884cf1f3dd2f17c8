"""``tempflex train``: train a stage from a YAML recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import user_errors


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (recipes/*.yaml, recipes/tiny/*.yaml).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Overrides key.sub=value, the value parsed as YAML.")
    ] = None,
) -> None:
    """Train a stage from a YAML recipe; run under torchrun or accelerate launch for many processes.

    Bad recipes, data and media and resume problems found while setting up are one-line errors; errors during
    training are not caught, so that a bug shows its traceback.
    """
    from tempflex.train.engine import Trainer
    from tempflex.train.recipe import load_recipe

    with user_errors():
        trainer = Trainer(load_recipe(recipe, overrides or []))  # builds the recipe's objective, model and data
        trainer.resume()  # a changed batch, a bad resume path or a damaged checkpoint: one line, exit 2
    typer.echo(f"final model: {trainer.run()}")
