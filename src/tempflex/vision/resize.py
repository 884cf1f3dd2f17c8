"""Native-resolution sizing: pick the patch grid an image or video frame is resized to.

TempFlex encodes every image at (close to) its own resolution (paper section 3.1, appendix A.1): no tiling, no
padding. The 2x2 patch merger needs an even patch grid, so a side is resized to a multiple of
``patch_size * merge_size`` (32 px for SigLIP2-patch16), keeping the aspect ratio, and the whole image is scaled so
that its merged token count lies in ``[min_tokens, max_tokens]`` (images: [4, 2048]; video frames: the per-frame
budget, 64 tokens = 256 patches by default).

Rounding rule (the paper is silent): each side goes to the nearest multiple of the unit, ties toward the smaller
size. 1280x720 therefore becomes 1280x704, 40x22 = 880 merged tokens; the paper's "~900" is H*W/32^2 = 900, which
would need a half row of 2x2 windows. If nearest rounding breaks a token limit, the floor/ceil neighbour that stays
within the limits is used: the one with the most tokens among those that distort the aspect ratio by less than
10%, else the least distorted (1280x720 at 64 tokens per frame: 6x10 = 60 tokens, not 5x9 = 45).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_ASPECT_RATIO = 200.0  # beyond this a side collapses below one 2x2 window at any sane budget
MAX_DISTORTION = 0.1  # |log aspect error| a fallback grid may have before fewer tokens are preferred


@dataclass(frozen=True)
class GridSize:
    """The resize target of one image or frame. ``rows``/``cols`` count merged tokens (2x2 patch windows)."""

    rows: int
    cols: int
    unit: int  # pixels per merged token side: patch_size * merge_size

    @property
    def tokens(self) -> int:
        return self.rows * self.cols

    @property
    def height(self) -> int:
        return self.rows * self.unit

    @property
    def width(self) -> int:
        return self.cols * self.unit

    def patch_grid(self, merge_size: int) -> tuple[int, int]:
        """(h, w): the patch grid the encoder sees, both even when merge_size is 2."""
        return self.rows * merge_size, self.cols * merge_size


def _round_half_down(x: float) -> int:
    """Nearest integer, ties down; the 1e-6 absorbs float error of the budget scaling (5.9999999 -> 6)."""
    return math.floor(x + 0.5 - 1e-6)


def native_grid(
    height: int,
    width: int,
    *,
    patch_size: int = 16,
    merge_size: int = 2,
    min_tokens: int = 4,
    max_tokens: int = 2048,
) -> GridSize:
    """The merged-token grid for an image of ``height`` x ``width`` pixels.

    Keeps the aspect ratio, scales into ``[min_tokens, max_tokens]`` merged tokens and rounds each side to a multiple
    of ``patch_size * merge_size`` pixels. Raises ``ValueError`` naming the problem for empty sizes, extreme aspect
    ratios and impossible limits.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height} (WxH)")
    if not 1 <= min_tokens <= max_tokens:
        raise ValueError(f"token limits must satisfy 1 <= min_tokens <= max_tokens, got [{min_tokens}, {max_tokens}]")
    aspect = max(height, width) / min(height, width)
    if aspect > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio {aspect:.0f}:1 of a {width}x{height} image exceeds {MAX_ASPECT_RATIO:.0f}:1")
    unit = patch_size * merge_size
    rows, cols = height / unit, width / unit  # fractional merged-token grid at native resolution
    area = rows * cols
    if area > max_tokens:
        scale = math.sqrt(max_tokens / area)
    elif area < min_tokens:
        scale = math.sqrt(min_tokens / area)
    else:
        scale = 1.0
    rows, cols = rows * scale, cols * scale

    nearest = (max(1, _round_half_down(rows)), max(1, _round_half_down(cols)))
    if min_tokens <= nearest[0] * nearest[1] <= max_tokens:
        return GridSize(*nearest, unit=unit)
    candidates = {
        (max(1, r), max(1, c))
        for r in (math.floor(rows), math.ceil(rows), math.floor(rows) - 1, math.ceil(rows) + 1)
        for c in (math.floor(cols), math.ceil(cols), math.floor(cols) - 1, math.ceil(cols) + 1)
    }
    valid = [rc for rc in candidates if min_tokens <= rc[0] * rc[1] <= max_tokens]
    if not valid:
        raise ValueError(
            f"no {unit}-px grid for a {width}x{height} image fits [{min_tokens}, {max_tokens}] merged tokens"
        )
    target = math.log(rows / cols)

    def cost(rc: tuple[int, int]) -> tuple[bool, int, float]:
        distortion = abs(math.log(rc[0] / rc[1]) - target)
        return distortion > MAX_DISTORTION, -rc[0] * rc[1], distortion

    best = min(valid, key=cost)
    return GridSize(*best, unit=unit)
