"""``tempflex ask``: answer a question about a video or an image, offline, and say what it cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import print_json, user_errors


def register(app: typer.Typer) -> None:
    app.command("ask")(ask_cmd)


def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question, e.g. \"Which way does the red circle move?\".")],
    video: Annotated[Path | None, typer.Option("--video", help="A video file (mp4, mkv, webm, ...).")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="An image file instead of a video.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Frames to sample (default: the model's).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A multiple-choice option; repeat for each (the answer is the option the model rates highest).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest free answer, in tokens.")] = 32,
    budget: Annotated[int | None, typer.Option("--budget", help="Most tokens the video may cost the LLM (visual tokens + time tags); see docs/budget.md.")] = None,
    reduce: Annotated[str | None, typer.Option("--reduce", help="Token reducer under --budget (default flux): flux, drop, uniform, ata, ...; options after commas (drop,threshold=0.8).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer, frames, tokens and timings as JSON.")] = False,
) -> None:  # fmt: skip
    """Answer a question about a video or an image, offline, and say what it cost."""
    from transformers.utils import logging as transformers_logging

    from tempflex.ask import Asker, load_media, model_frames

    with user_errors():
        if (video is None) == (image is None):
            raise ValueError("give exactly one of --video or --image")
        # bad media or options fail in a second, before the model loads
        spec = None
        if reduce is not None and budget is None:
            raise ValueError("--reduce chooses how to spend a token budget: give --budget N too")
        if budget is not None:
            from tempflex.budget import BudgetSpec

            if image is not None:
                raise ValueError("--budget applies to videos; an image has no frames to spend it on")
            spec = BudgetSpec.for_reducer(reduce or "flux", budget).model_dump()
        media = load_media(video=video, image=image, frames=model_frames(model) if frames is None else frames)
        transformers_logging.disable_progress_bar()  # the answer, not weight-loading bars
        asker = Asker(model)
        answer = asker.ask(question, media, options=option or None, max_new_tokens=max_new_tokens, budget=spec)
    answer.timings = {"load": asker.load_seconds, **answer.timings}
    if as_json:
        print_json(answer.to_json())
        return
    typer.echo(f"answer: {answer.text}")
    kind = f"{answer.frames} frames" if video is not None else "1 image"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in answer.timings.items() if k not in ("load", "total"))
    if answer.budget is not None:
        b = answer.budget
        typer.echo(f"budget {b['budget']}: {b['visual_tokens']} visual + {b['tag_tokens']} tag tokens = {b['total']} "
                   f"(--reduce {reduce or 'flux'})")
    typer.echo(f"{kind}, {answer.visual_tokens} visual tokens; {answer.timings['total']:.2f} s "
               f"({stages}; model load {asker.load_seconds:.1f} s)")
