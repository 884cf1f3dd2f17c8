"""``tempflex ask``: answer a question about a video or an image, offline, and say what it cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tempflex.cli.common import ProgressBar, print_json, user_errors

if TYPE_CHECKING:
    from tempflex.ask import Answer


def register(app: typer.Typer) -> None:
    app.command("ask")(ask_cmd)


def ask_cmd(
    question: Annotated[str | None, typer.Argument(help="The question, e.g. \"Which way does the red circle move?\".")] = None,
    video: Annotated[Path | None, typer.Option("--video", help="A video file (mp4, mkv, webm, ...).")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="An image file instead of a video.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Frames to sample (default: the model's).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A multiple-choice option; repeat for each (the answer is the option the model rates highest).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest free answer, in tokens.")] = 32,
    budget: Annotated[int | None, typer.Option("--budget", help="Most tokens the video may cost the LLM (visual tokens + time tags); see docs/budget.md.")] = None,
    reduce: Annotated[str | None, typer.Option("--reduce", help="Token reducer under --budget (default flux): flux, drop, uniform, ata, ...; options after commas (drop,threshold=0.8).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer, frames, tokens and timings as JSON.")] = False,
    questions: Annotated[Path | None, typer.Option("--questions", help="A JSONL file of questions (as examples/questions.jsonl), all answered by one loaded model.")] = None,
) -> None:  # fmt: skip
    """Answer a question about a video or an image, offline, and say what it cost."""
    from transformers.utils import logging as transformers_logging

    from tempflex.ask import check_question, load_media, model_frames

    if questions is not None:
        _ask_file(questions, model, frames, max_new_tokens, budget, reduce, as_json, given=(question, video, image))
        return
    with user_errors():
        if question is None:
            raise ValueError("give a question (or --questions FILE.jsonl)")
        if (video is None) == (image is None):
            raise ValueError("give exactly one of --video or --image")
        # a bad question, media or options fail in a second, before the model loads
        check_question(question, option or None)
        if budget is not None and image is not None:
            raise ValueError("--budget applies to videos; an image has no frames to spend it on")
        spec = _budget_spec(budget, reduce)
        media = load_media(video=video, image=image, frames=model_frames(model) if frames is None else frames)
        transformers_logging.disable_progress_bar()  # our one loading bar, not transformers' per-file ones
        asker = load_asker(model)
        answer = asker.ask(question, media, options=option or None, max_new_tokens=max_new_tokens, budget=spec)
    answer.timings = {"load": asker.load_seconds, **answer.timings}
    if as_json:
        print_json(answer.to_json())
        return
    typer.echo(f"answer: {shown(answer)}")
    kind = f"{answer.frames} frames" if video is not None else "1 image"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in answer.timings.items() if k not in ("load", "total"))
    if answer.budget is not None:
        b = answer.budget
        typer.echo(f"budget {b['budget']}: {b['visual_tokens']} visual + {b['tag_tokens']} tag tokens = {b['total']} "
                   f"(--reduce {reduce or 'flux'})")
    typer.echo(f"{kind}, {answer.visual_tokens} visual tokens; {answer.timings['total']:.2f} s "
               f"({stages}; model load {asker.load_seconds:.1f} s)")


def _budget_spec(budget: int | None, reduce: str | None) -> dict | None:
    """The budget spec of ``--budget``/``--reduce``, its plug-ins built once here so that a bad reducer option fails
    before the model loads."""
    if reduce is not None and budget is None:
        raise ValueError("--reduce chooses how to spend a token budget: give --budget N too")
    if budget is None:
        return None
    from tempflex.budget import BudgetSpec

    spec = BudgetSpec.for_reducer(reduce or "flux", budget)
    spec.components()  # raises on an option the reducer, allocator or selector does not take
    return spec.model_dump()


def _ask_file(path: Path, model: Path | None, frames: int | None, max_new_tokens: int, budget: int | None,
              reduce: str | None, as_json: bool, given: tuple) -> None:
    """``--questions``: every line answered by one loaded model, with a progress bar; one JSON line each."""
    from transformers.utils import logging as transformers_logging

    from tempflex.ask import ask_questions, model_frames, read_questions

    with user_errors():
        if any(x is not None for x in given):
            raise ValueError("--questions takes the questions and media from the file: give no question, --video or "
                             "--image")
        spec = _budget_spec(budget, reduce)
        records = read_questions(path)
        transformers_logging.disable_progress_bar()
        asker = load_asker(model)
        right = scored = 0
        with ProgressBar("asking") as bar:
            bar(0, len(records))
            answered = ask_questions(asker, path, records, frames=model_frames(model) if frames is None else frames,
                                     max_new_tokens=max_new_tokens, budget=spec)
            for done, (record, answer) in enumerate(answered, start=1):
                out = {**answer.to_json(), **({"expected": record["answer"]} if "answer" in record else {})}
                if "answer" in record:
                    out["correct"] = answer.text == record["answer"]
                    right, scored = right + out["correct"], scored + 1
                typer.echo(json.dumps(out) if as_json else f"{record['question']} -> {shown(answer)}")
                bar(done, len(records))
    if scored and not as_json:
        typer.echo(f"{right} of {scored} answers match the file's answers")


def shown(answer: Answer) -> str:
    """The answer as the terminal shows it: an empty free answer is said, not printed as nothing (``--json`` keeps
    the empty text)."""
    return answer.text if answer.text or answer.choice is not None else "(empty: the model ended its turn at once)"


def load_asker(model: Path | None):
    """The model loaded with a bar on stderr: its steps, and on the first use ever the one-time conversion of the
    wheel LLM tensor by tensor. On a terminal the bar is live; on a pipe or file rich prints it once, finished."""
    from tempflex.ask import Asker

    with ProgressBar("loading the model", status=True, elapsed=True) as bar:
        return Asker(model, progress=bar)
