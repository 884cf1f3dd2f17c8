"""Visual-token accounting: how many tokens an image or video costs the LLM under each encoding strategy.

Pure functions, no model and no pixels: the counts of the paper's encoding ablation (section 4.3, figure 3,
appendix A.1 and table 6), for TempFlex and for the two baselines it compares against.

- ``native`` (TempFlex): the image keeps its aspect ratio and is resized to an even grid of 2x2 patch windows
  (``tempflex.vision.resize.native_grid``); one merged token per window, in [4, 2048] per image. Each side is
  rounded to the nearest 32 px, ties down, so 1280x720 -> 1280x704 = 40x22 = 880 tokens and 1448x1448 ->
  1440x1440 = 2025 tokens. The paper's "~900" and "2048" are H*W/32^2, which ignores that a 2x2 window needs an
  even patch grid (720 px = 45 patches, an odd count). Video frames share one grid under a per-frame budget
  (64 tokens = 256 patches by default) and each frame adds one separator text token.
- ``fixed`` (LLaVA-1.5 style): every image squashed to ``resolution`` x ``resolution``, one token per patch,
  no merging: (384 // 16)^2 = 576, (384 // 14)^2 = 729.
- ``tiled`` (LLaVA-NeXT "anyres"): a best-fit grid of ``tile`` x ``tile`` crops plus one global view, each
  encoded alone at one token per patch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tempflex.vision.resize import native_grid

if TYPE_CHECKING:  # transformers is slow to import; the token maths must not need it
    from tempflex.configuration import TempFlexConfig

STRATEGIES = ("native", "fixed", "tiled")

# Defaults, equal to TempFlexConfig's (a test keeps them in step); count_tokens(config=...) overrides them.
PATCH_SIZE = 16  # SigLIP2-patch16-naflex
MERGE_SIZE = 2  # 2x2 patch windows per merged token
IMAGE_MIN_TOKENS = 4  # a 64x64 image
IMAGE_MAX_TOKENS = 2048  # 8192 patches
VIDEO_MIN_TOKENS_PER_FRAME = 4
VIDEO_MAX_TOKENS_PER_FRAME = 64  # the authors' 256 patches per frame
EVAL_FRAMES = 128  # frames sampled per video at test time


@dataclass(frozen=True)
class TokenProfile:
    """Named token limits: what "2048" means (docs/tokens.md: the paper extends the position table to 2048; the
    authors' scripts allow 2048 patches per image and 256 per video frame)."""

    name: str
    image_max_tokens: int  # merged tokens per image (4 patches each)
    video_max_tokens_per_frame: int  # merged tokens per video frame
    about: str  # one line for --help and docs


PROFILES = {
    "merged2048": TokenProfile("merged2048", 2048, 64,
                               "at most 2048 merged tokens (8192 patches) per image, 64 tokens (256 patches) a frame"),
    "patches2048": TokenProfile("patches2048", 512, 64,
                                "the authors' scripts: at most 2048 patches (512 merged tokens) per image, 256 "
                                "patches (64 tokens) a frame"),
}
DEFAULT_PROFILE = "merged2048"  # docs/tokens.md gives the reason


def get_profile(name: str) -> TokenProfile:
    """The named profile; ``ValueError`` naming the choices otherwise."""
    if name not in PROFILES:
        raise ValueError(f"unknown token profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
TIMESTAMP_NOTE = "timestamp tags not counted: their length depends on the tokenizer"


@dataclass(frozen=True)
class TokenCount:
    """What one image or video costs. ``tokens`` counts only visual tokens, the ones that reach the LLM."""

    strategy: str  # "native" | "fixed" | "tiled"
    tokens: int  # visual tokens that reach the LLM, all views and frames
    resized: tuple[int, int]  # (W, H) in pixels of each view (tile, global view, frame) fed to the encoder
    patch_size: int  # encoder patch side in pixels
    token_grid: tuple[
        int, int
    ]  # (cols, rows) of tokens per view: merged tokens for native, patches otherwise
    per_view: int  # visual tokens per view
    views: int = 1  # encoder views per image or frame: tiles + 1 global view for tiled, else 1
    tile_grid: tuple[int, int] | None = None  # tiled only: (cols, rows) of tiles
    merge_size: int = 1  # patches per merged-token side (2 for native, 1 = no merging)
    frames: int | None = None  # video frames; None for an image
    per_frame: int | None = None  # visual tokens per frame; None for an image
    extra_text_tokens: int = 0  # text tokens the encoding adds around the visual ones (frame separators)
    notes: tuple[str, ...] = ()  # what the count leaves out

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _check_size(width: int, height: int) -> None:
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise ValueError(f"image size must be two positive integers, got {width}x{height} (WxH)")


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)`` (width, height); ``ValueError`` naming the text otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHT, e.g. 1280x720, got {text!r}")
    width, height = (int(p) for p in parts)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return width, height


def native_tokens(
    width: int,
    height: int,
    *,
    patch_size: int = PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
    min_tokens: int = IMAGE_MIN_TOKENS,
    max_tokens: int = IMAGE_MAX_TOKENS,
) -> TokenCount:
    """TempFlex native resolution (appendix A.1): (H/32)(W/32) merged tokens, rounded to an even patch grid."""
    _check_size(width, height)
    _check_positive(patch_size=patch_size, merge_size=merge_size)
    grid = native_grid(
        height,
        width,
        patch_size=patch_size,
        merge_size=merge_size,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
    )
    return TokenCount(
        strategy="native",
        tokens=grid.tokens,
        resized=(grid.width, grid.height),
        patch_size=patch_size,
        token_grid=(grid.cols, grid.rows),
        per_view=grid.tokens,
        merge_size=merge_size,
    )


def fixed_tokens(
    width: int, height: int, *, patch_size: int = PATCH_SIZE, resolution: int = 384
) -> TokenCount:
    """Fixed resolution (appendix A.1): squash to ``resolution``^2, (resolution // patch_size)^2 tokens."""
    _check_size(width, height)
    _check_positive(patch_size=patch_size, resolution=resolution)
    side = resolution // patch_size
    if side < 1:
        raise ValueError(f"resolution {resolution} is smaller than one {patch_size}-px patch")
    return TokenCount(
        strategy="fixed",
        tokens=side * side,
        resized=(resolution, resolution),
        patch_size=patch_size,
        token_grid=(side, side),
        per_view=side * side,
    )


def best_tile_grid(
    width: int, height: int, *, tile: int = 384, max_tiles: int = 9, max_side: int | None = 3
) -> tuple[int, int]:
    """(cols, rows) of tiles for a ``width`` x ``height`` image: LLaVA-NeXT's best-fit ("select_best_resolution") rule.

    Candidates are the grids with cols * rows <= ``max_tiles`` and, if ``max_side`` is set, both sides <=
    ``max_side`` (the pinpoints "(1x1),...,(3x3)" by default). The image is scaled to fit each canvas keeping its
    aspect ratio; the grid showing the most of its pixels (the scaled area, capped at the original area: upscaling
    adds nothing) wins, ties going to the canvas that wastes least. ``max_side=None`` allows 4x2 and 1x9 too:
    then 1280x720 fits 4x2 exactly (9 views, 5184 tokens at patch 16) instead of the paper's 3x2 (~4032).
    """
    _check_size(width, height)
    _check_positive(tile=tile, max_tiles=max_tiles)
    side_limit = max_tiles if max_side is None else min(max_side, max_tiles)
    best, best_key = (1, 1), (-1, 0)
    for rows in range(1, side_limit + 1):
        for cols in range(1, side_limit + 1):
            if cols * rows > max_tiles:
                continue
            canvas_w, canvas_h = cols * tile, rows * tile
            scale = min(canvas_w / width, canvas_h / height)
            shown = min(int(width * scale) * int(height * scale), width * height)
            key = (shown, -(canvas_w * canvas_h - shown))  # more pixels shown, then less wasted canvas
            if key > best_key:
                best, best_key = (cols, rows), key
    return best


def tiled_tokens(
    width: int,
    height: int,
    *,
    patch_size: int = PATCH_SIZE,
    tile: int = 384,
    max_tiles: int = 9,
    max_side: int | None = 3,
) -> TokenCount:
    """Tiled "anyres" (appendix A.1): K best-fit tiles plus a global view, (tile // patch_size)^2 tokens each."""
    _check_positive(patch_size=patch_size)
    cols, rows = best_tile_grid(width, height, tile=tile, max_tiles=max_tiles, max_side=max_side)
    side = tile // patch_size
    if side < 1:
        raise ValueError(f"tile {tile} is smaller than one {patch_size}-px patch")
    views = cols * rows + 1  # + the global view, the whole image squashed to one tile
    return TokenCount(
        strategy="tiled",
        tokens=views * side * side,
        resized=(tile, tile),
        patch_size=patch_size,
        token_grid=(side, side),
        per_view=side * side,
        views=views,
        tile_grid=(cols, rows),
    )


def video_tokens(
    width: int,
    height: int,
    frames: int,
    *,
    patch_size: int = PATCH_SIZE,
    merge_size: int = MERGE_SIZE,
    min_tokens_per_frame: int = VIDEO_MIN_TOKENS_PER_FRAME,
    max_tokens_per_frame: int = VIDEO_MAX_TOKENS_PER_FRAME,
    timestamps: bool = False,
    separator: bool = True,
) -> TokenCount:
    """TempFlex video: every frame on one native grid under the per-frame budget, plus one separator per frame.

    ``tokens`` = frames * per-frame visual tokens (TFF keeps the token count); separators go to
    ``extra_text_tokens``. Timestamp tags are text whose length depends on the tokenizer, so they are not counted
    (a note says so when ``timestamps`` is on).
    """
    _check_positive(frames=frames)
    frame = native_tokens(
        width,
        height,
        patch_size=patch_size,
        merge_size=merge_size,
        min_tokens=min_tokens_per_frame,
        max_tokens=max_tokens_per_frame,
    )
    return TokenCount(
        strategy="native",
        tokens=frames * frame.tokens,
        resized=frame.resized,
        patch_size=patch_size,
        token_grid=frame.token_grid,
        per_view=frame.tokens,
        merge_size=merge_size,
        frames=frames,
        per_frame=frame.tokens,
        extra_text_tokens=frames if separator else 0,
        notes=(TIMESTAMP_NOTE,) if timestamps else (),
    )


def count_tokens(
    width: int,
    height: int,
    *,
    strategy: str = "native",
    patch_size: int | None = None,
    frames: int | None = None,
    max_tokens: int | None = None,
    config: TempFlexConfig | None = None,
    profile: str | None = None,
) -> TokenCount:
    """Dispatch on ``strategy``; ``frames`` makes a native count a video.

    ``config`` supplies patch size, merge size, token limits and timestamps (else the paper's defaults);
    ``profile`` (``PROFILES``) replaces the image and per-frame limits; ``patch_size`` overrides the patch size and
    ``max_tokens`` the per-image (or, for video, per-frame) budget.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if profile is not None:
        if strategy != "native":
            raise ValueError(f"a token profile applies to the native strategy only, not {strategy!r}")
        chosen = get_profile(profile)
        if max_tokens is None:
            max_tokens = chosen.image_max_tokens if frames is None else chosen.video_max_tokens_per_frame
    if patch_size is None:
        patch_size = config.patch_size if config is not None else PATCH_SIZE
    if strategy != "native":
        if frames is not None:
            raise ValueError(f"frames are counted for the native (TempFlex) strategy only, not {strategy!r}")
        if max_tokens is not None:
            raise ValueError(f"max_tokens applies to the native strategy only, not {strategy!r}")
        fn = fixed_tokens if strategy == "fixed" else tiled_tokens
        return fn(width, height, patch_size=patch_size)
    merge = config.merge_size if config is not None else MERGE_SIZE
    if frames is None:
        lo = config.image_min_tokens if config is not None else IMAGE_MIN_TOKENS
        hi = config.image_max_tokens if config is not None else IMAGE_MAX_TOKENS
        hi = hi if max_tokens is None else max_tokens
        return native_tokens(
            width, height, patch_size=patch_size, merge_size=merge, min_tokens=min(lo, hi), max_tokens=hi
        )
    lo = config.video_min_tokens_per_frame if config is not None else VIDEO_MIN_TOKENS_PER_FRAME
    hi = config.video_max_tokens_per_frame if config is not None else VIDEO_MAX_TOKENS_PER_FRAME
    hi = hi if max_tokens is None else max_tokens
    return video_tokens(
        width,
        height,
        frames,
        patch_size=patch_size,
        merge_size=merge,
        min_tokens_per_frame=min(lo, hi),
        max_tokens_per_frame=hi,
        timestamps=config.video_timestamps if config is not None else False,
    )


# The comparison the paper draws (figure 3): label -> (strategy, patch size).
COMPARISONS: dict[str, tuple[str, int]] = {
    "native": ("native", 16),
    "fixed/16": ("fixed", 16),
    "fixed/14": ("fixed", 14),
    "tiled/16": ("tiled", 16),
    "tiled/14": ("tiled", 14),
}
# Sizes of figure 3 and the limits of section 3.1, (W, H).
REFERENCE_SIZES: tuple[tuple[int, int], ...] = (
    (32, 32),
    (384, 384),
    (768, 768),
    (1280, 720),
    (1152, 1152),
    (1448, 1448),
    (2048, 2048),
)
VIDEO_FRAME_BUDGETS = (64, 128)  # frames sampled in training and at test time


def compare(width: int, height: int) -> dict[str, TokenCount]:
    """One image under every strategy of ``COMPARISONS``."""
    return {
        label: count_tokens(width, height, strategy=strategy, patch_size=patch)
        for label, (strategy, patch) in COMPARISONS.items()
    }


def video_budgets(
    width: int, height: int, frame_budgets: tuple[int, ...] = VIDEO_FRAME_BUDGETS
) -> dict[int, TokenCount]:
    """One video at each frame budget, native per-frame grid."""
    return {f: count_tokens(width, height, frames=f) for f in frame_budgets}


def media_frames(available: int | None, requested: int | None = None, budget: int = EVAL_FRAMES) -> int:
    """Frames to count for a video file: ``requested`` if given, else the test-time budget capped at the file's."""
    if requested is not None:
        return requested
    if available is None or available < 1:
        return budget
    return min(budget, available)
