"""``tempflex eval``: score a model on a video benchmark from its published files (docs/eval.md).

``tempflex eval BENCHMARK --data DIR ...`` runs (and, rerun with the same options, resumes) an evaluation;
``tempflex eval --list`` names each benchmark and the files it reads; ``tempflex eval export-lmms BENCHMARK DIR
--data DATA`` writes the same questions as a local lmms-eval task. Thin over ``tempflex.eval``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import ProgressBar, console, exit_interrupted, print_json, user_errors

EXPORT = "export-lmms"


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def eval_cmd(
    target: Annotated[str | None, typer.Argument(metavar="BENCHMARK", help=f"A benchmark (see --list), or `{EXPORT}`.", show_default=False)] = None,
    rest: Annotated[list[str] | None, typer.Argument(metavar="ARGS", help=f"With {EXPORT}: the benchmark and the task's folder.", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option("--data", help="The benchmark's folder, in its published layout.")] = None,
    videos: Annotated[Path | None, typer.Option("--videos", help="Where its videos are, if not in their usual place under --data.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Frames per video (default: the model's).")] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Most tokens a video may cost the LLM; see docs/budget.md.")] = None,
    reduce: Annotated[str, typer.Option("--reduce", help="Token reducer under --budget (flux, drop, uniform, ata; options after commas).")] = "flux",
    score: Annotated[str, typer.Option("--score", help="options: score the answer letters in one forward; text: score the options' words; generate: free text read by the benchmark's rule.")] = "options",
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N questions.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Questions per forward pass.")] = 4,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Longest free answer (default: the benchmark's).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for report.json, predictions.jsonl, accuracy.png (default: DATA/eval-BENCHMARK).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the benchmarks and the files each reads.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report (or the list) as JSON.")] = False,
) -> None:  # fmt: skip
    """Score a model on a video benchmark read from its published files; rerun the same command to resume."""
    if list_:
        return _list(as_json)
    with user_errors():
        if target is None:
            raise ValueError("name a benchmark (tempflex eval --list shows them) and give --data DIR")
        if target == EXPORT:
            return _export(rest or [], data, videos, limit, as_json)
        if rest:
            raise ValueError(f"unexpected arguments {' '.join(rest)}")
        if data is None:
            raise ValueError("--data DIR is required: the benchmark's folder")
        from tempflex.ask import model_frames
        from tempflex.eval import EvalConfig, get_benchmark, load_questions

        bench = get_benchmark(target)
        config = EvalConfig(bench.name, data, videos=videos, out=out, limit=limit, batch_size=batch_size,
                            scoring=score)
        load_questions(config)  # a bad layout fails here, before the model loads
        spec = _budget(budget, reduce)
        n_frames = model_frames(model) if frames is None else frames
        report = _run(config, model, n_frames, spec, max_new_tokens or bench.max_new_tokens)
    if as_json:
        print_json(report.to_json())
    else:
        _table(report, config.out_dir)


def _budget(budget: int | None, reduce: str) -> dict | None:
    if budget is None:
        return None
    from tempflex.budget import BudgetSpec

    return BudgetSpec.for_reducer(reduce, budget).model_dump()


def _run(config, model: Path | None, frames: int, spec: dict | None, max_new_tokens: int):
    from transformers.utils import logging as transformers_logging

    from tempflex.ask import Asker
    from tempflex.eval import ResponderSettings, TempFlexResponder, run_eval

    settings = ResponderSettings(frames=frames, scoring=config.scoring, budget=spec, max_new_tokens=max_new_tokens)
    transformers_logging.disable_progress_bar()
    responder = TempFlexResponder(Asker(model), settings)
    with ProgressBar(config.benchmark) as bar:
        try:
            return run_eval(config, responder, {"frames": frames, "budget": spec, "max_new_tokens": max_new_tokens},
                            bar)
        except KeyboardInterrupt:
            bar.close()  # before the message, so that it is not drawn over
            exit_interrupted()


def _table(report, out: Path) -> None:
    from rich.table import Table

    from tempflex.eval.report import table_rows

    table = Table(title=f"{report.title}: {report.questions} questions", title_justify="left")
    for name in ("group", "value", "n", "accuracy", "95 % CI"):
        table.add_column(name, justify="right" if name in ("n", "accuracy", "95 % CI") else "left")
    for key, value, n, acc, low, high in table_rows(report):
        table.add_row(key, value, str(n), f"{acc:.3f}", f"{low:.3f}-{high:.3f}")
    out_console = console()
    out_console.print(table)
    if report.headline_group:
        out_console.print(f"headline (mean over {report.headline_group}): {report.headline:.3f}")
    out_console.print(f"unmatched answers {report.unmatched}; {report.questions_per_second:.2f} questions/s; "
                      f"written to {out}")


def _list(as_json: bool) -> None:
    from tempflex.eval import available, get_benchmark

    rows = [(name, get_benchmark(name)) for name in available()]
    if as_json:
        print_json([{"name": n, "title": b.title, "files": b.files, "groups": list(b.groups)} for n, b in rows])
        return
    for name, bench in rows:
        typer.echo(f"{name:30} {bench.title}\n{'':30} files: {bench.files}")


def _export(rest: list[str], data: Path | None, videos: Path | None, limit: int | None, as_json: bool) -> None:
    if len(rest) != 2 or data is None:
        raise ValueError(f"usage: tempflex eval {EXPORT} BENCHMARK DIR --data DATA")
    from tempflex.integrations.lmms_eval.task import export_task

    written = export_task(rest[0], data, Path(rest[1]), videos=videos, limit=limit)
    if as_json:
        print_json({k: str(v) for k, v in written.items()})
    else:
        typer.echo(f"lmms-eval task {written['task']} ({written['questions']} questions) in {rest[1]}: "
                   f"python -m lmms_eval --model tempflex --tasks {written['task']} --include_path {rest[1]}")
