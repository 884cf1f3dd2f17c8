"""``tempflex probes ...``: synthetic temporal-probe videos with multiple-choice questions (docs/probes.md).

Thin over ``tempflex.probes``; bad options, a file as ``--out`` or a folder made with other options are one line
on stderr with exit code 2; Ctrl-C exits 130, and rerunning the same command resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import ProgressBar, check_batch, console, exit_interrupted, print_json, user_errors

probes_app = typer.Typer(help="Synthetic temporal probes: videos of shapes with multiple-choice questions.",
                         no_args_is_help=True)

DEFAULT_SPLIT = "train=0.8,val=0.1,test=0.1"


def register(app: typer.Typer) -> None:
    app.add_typer(probes_app, name="probes")


@probes_app.callback()
def probes_main() -> None:
    """Synthetic temporal probes: videos of shapes with multiple-choice questions."""


def parse_split(text: str) -> dict[str, float]:
    """``train=0.8,val=0.1,test=0.1`` as {split: fraction}; the fractions are checked by ``ProbeSettings``."""
    split = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            split[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--split takes NAME=FRACTION pairs like {DEFAULT_SPLIT}, got {text!r}") from None
    return split


def parse_skills(text: str | None) -> tuple[str, ...] | None:
    """``a,b`` as a tuple of names; None (every skill) when not given."""
    if text is None:
        return None
    return tuple(s.strip() for s in text.split(",") if s.strip())


@probes_app.command("generate")
def generate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write into (empty, new, or an earlier run to resume).")],
    n: Annotated[int, typer.Option("--n", help="Videos in all, over the splits.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed (>= 0); sample i of a split depends only on seed, split, i.")] = 0,
    frames: Annotated[int, typer.Option("--frames", help="Frames per video (>= 8).")] = 16,
    fps: Annotated[int, typer.Option("--fps", help="Frame rate of the mp4 files.")] = 8,
    size: Annotated[int, typer.Option("--size", help="Square side in px, a multiple of 16 in 32..512.")] = 64,
    distractors: Annotated[int, typer.Option("--distractors", help="Extra small shapes per video (0..6).")] = 0,
    speed: Annotated[float, typer.Option("--speed", help="Scales motion amplitudes, 0.25..1.5 (0.5 = harder).")] = 1.0,
    landmark: Annotated[float, typer.Option("--landmark", help="Chance a camera pan shows a fixed landmark shape, 0..1 (1 = easier).")] = 0.5,
    skills: Annotated[str | None, typer.Option("--skills", help="Comma-separated skill names (default: all).")] = None,
    split: Annotated[str, typer.Option("--split", help="Fractions per split, summing to 1.")] = DEFAULT_SPLIT,
    workers: Annotated[int, typer.Option("--workers", help="Processes that render and encode.")] = 1,
) -> None:  # fmt: skip
    """Write N probe videos with their questions (JSONL per split, mixtures, probes.json); resumable."""
    from tempflex.probes import ProbeSettings, generate_probes

    bar = ProgressBar("probes")
    with user_errors():
        chosen = parse_skills(skills)
        settings = ProbeSettings(frames=frames, fps=fps, size=size, distractors=distractors, speed=speed,
                                 landmark=landmark, split=parse_split(split),
                                 **({} if chosen is None else {"skills": chosen}))
        try:
            summary = generate_probes(out, seed, n, settings, workers=workers, progress=bar)
        except KeyboardInterrupt:
            bar.close()  # before the message, so that it is not drawn over
            exit_interrupted()
        finally:
            bar.close()
    typer.echo(summary.line())


@probes_app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option("--data", help="A probe set made by `tempflex probes generate`.")],
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    split: Annotated[str, typer.Option("--split", help="Split to score (its JSONL must exist).")] = "test",
    frames: Annotated[int | None, typer.Option("--frames", help="Frames per video (default: the model's).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Score only the first N questions.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Questions per forward pass.")] = 8,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for report.json, predictions.jsonl, accuracy.png (default: DATA/eval-SPLIT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of a table.")] = False,
) -> None:  # fmt: skip
    """Accuracy per skill (95 % Wilson intervals), chance, visual tokens per question; a table, JSON and a plot."""
    from tempflex.probes.run import evaluate_saved_model

    with user_errors():
        check_batch(batch_size, limit)
        if frames is not None and frames < 1:
            raise ValueError(f"--frames must be >= 1, got {frames}")
        with ProgressBar("eval", transient=True) as bar:
            run = evaluate_saved_model(data, model, split=split, frames=frames, limit=limit, batch_size=batch_size,
                                       out=out, progress=bar)
    if as_json:
        print_json(run.report.to_json())
        return
    print_report(run.report)
    typer.echo(f"wrote {run.paths['report']}, {run.paths['predictions']}, {run.paths['plot']}")


def print_report(report) -> None:
    from rich.table import Table

    table = Table(title=f"{report.model} on {report.data} [{report.split}], {report.frames} frames, "
                        f"{report.questions} questions, {report.seconds:.0f} s")
    for column in ("skill", "kind", "n", "accuracy", "95 % CI", "chance", "visual tokens"):
        table.add_column(column, justify="left" if column in ("skill", "kind") else "right")
    for s in report.skills:
        table.add_row(s.skill, "temporal" if s.temporal else "static", str(s.n), f"{s.accuracy:.3f}",
                      f"{s.ci_low:.2f}-{s.ci_high:.2f}", f"{s.chance:.3f}", f"{s.visual_tokens:.0f}")
    table.add_row("mean temporal", "", "", f"{report.temporal_accuracy:.3f}", "", f"{report.temporal_chance:.3f}", "")
    table.add_row("mean static", "", "", f"{report.static_accuracy:.3f}", "", f"{report.static_chance:.3f}", "")
    console().print(table)
