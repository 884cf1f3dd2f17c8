"""FluxViT flexible sampling for training: a random frame count and resolution under a token threshold.

FluxViT (shared/papers/fluxvit-paper.txt, section 3.1, "Flexi-Sampling"): "for each video in a batch, we randomly
select a frame count ranging from F_min to F_max with a temporal stride t_s and select a spatial resolution between
R_min and R_max with a spatial stride r_s and enforce a threshold T_thres in keeping a reasonable size of visual
token pool". The paper gives no rule for a draw that breaks the threshold. We resample: a plan is drawn uniformly
from the (frames, resolution) pairs on the two strides whose token count is within ``max_tokens``, which is exactly
the distribution of "draw both uniformly and independently, redraw until under the threshold", without a loop.
Lowering the resolution step by step instead would pile the over-budget mass onto R_min.

Token count: TempFlex merges 2x2 patches, so a side must be a multiple of ``unit = patch_size * merge_size``
(32 px) and an R x R frame gives (R / unit)^2 merged tokens; a plan of F frames costs F * (R / unit)^2.
``plan_grid`` reads R as a square-equivalent budget for a real video: (R / unit)^2 tokens per frame, the aspect
ratio kept by ``native_grid`` (never upscaled beyond the video's own size, so the grid may use fewer tokens).

FluxViT's defaults (patch 14, no merge): F in [4, 24] stride 2, R in [168, 252] stride 28, T_thres = (2048, 4096).
The paper does not say what the two numbers of T_thres are; we model one upper bound, ``max_tokens``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from tempflex.vision.resize import GridSize, native_grid

RandomSource = int | np.random.Generator | random.Random


@dataclass(frozen=True)
class FlexibleSampling:
    """Ranges of a flexible-sampling draw. Validated when built; ``ValueError`` names the offending field."""

    min_frames: int  # F_min, frames per clip, >= 1
    max_frames: int  # F_max, reached from F_min in steps of frame_stride
    frame_stride: int  # t_s, step between allowed frame counts
    min_resolution: int  # R_min, side in pixels of the square-equivalent frame, a multiple of the unit (32)
    max_resolution: int  # R_max, reached from R_min in steps of resolution_stride
    resolution_stride: int  # r_s, a multiple of the unit so that every resolution stays on the 32-px lattice
    max_tokens: int  # T_thres, merged visual tokens per clip (frames * tokens per frame), upper bound
    patch_size: int = 16  # encoder patch side in pixels
    merge_size: int = 2  # merger window side in patches; unit = patch_size * merge_size

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{f.name} must be an int, got {value!r}")  # noqa: TRY004 (a bad config value)
            if value < 1:
                raise ValueError(f"{f.name} must be >= 1, got {value}")
        self._check_range("frames", self.min_frames, self.max_frames, self.frame_stride, "frame_stride")
        unit = self.unit
        for name in ("min_resolution", "max_resolution", "resolution_stride"):
            if getattr(self, name) % unit:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be a multiple of patch_size * merge_size = {unit} px"
                )
        self._check_range(
            "resolution", self.min_resolution, self.max_resolution, self.resolution_stride, "resolution_stride"
        )
        cheapest = self.min_frames * self.tokens_per_frame(self.min_resolution)
        if cheapest > self.max_tokens:
            raise ValueError(
                f"max_tokens={self.max_tokens} is below the cheapest plan: {self.min_frames} frames at "
                f"{self.min_resolution} px = {cheapest} tokens"
            )

    @staticmethod
    def _check_range(what: str, low: int, high: int, stride: int, stride_name: str) -> None:
        if high < low:
            raise ValueError(f"max_{what}={high} is below min_{what}={low}")
        if (high - low) % stride:
            raise ValueError(f"{stride_name}={stride} does not divide max_{what} - min_{what} = {high - low}")

    @property
    def unit(self) -> int:
        """Pixels per merged-token side."""
        return self.patch_size * self.merge_size

    @property
    def frame_counts(self) -> tuple[int, ...]:
        return tuple(range(self.min_frames, self.max_frames + 1, self.frame_stride))

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(range(self.min_resolution, self.max_resolution + 1, self.resolution_stride))

    def tokens_per_frame(self, resolution: int) -> int:
        """Merged tokens of an R x R frame: (R / unit)^2."""
        return (resolution // self.unit) ** 2

    @cached_property
    def feasible(self) -> tuple[tuple[int, int], ...]:
        """Every (frames, resolution) pair on the strides within ``max_tokens``, frames then resolution ascending."""
        return tuple(
            (f, r)
            for f in self.frame_counts
            for r in self.resolutions
            if f * self.tokens_per_frame(r) <= self.max_tokens
        )


@dataclass(frozen=True)
class FlexiblePlan:
    """One draw: sample ``num_frames`` frames and size each to a ``resolution``-px square-equivalent budget."""

    num_frames: int  # F
    resolution: int  # R, pixels
    tokens_per_frame: int  # (R / unit)^2 merged tokens, the per-frame budget
    total_tokens: int  # F * tokens_per_frame <= max_tokens (an upper bound for non-square videos)
    patch_size: int = 16
    merge_size: int = 2


def sample_plan(cfg: FlexibleSampling, rng_or_seed: RandomSource) -> FlexiblePlan:
    """Draw a plan uniformly among the pairs under the token threshold (FluxViT section 3.1, Flexi-Sampling).

    ``rng_or_seed``: an int seed (a fresh ``numpy.random.default_rng(seed)``), a ``numpy.random.Generator`` or a
    ``random.Random``; a generator advances by one draw. The global RNGs are never used.
    """
    pairs = cfg.feasible
    if isinstance(rng_or_seed, np.random.Generator):
        index = int(rng_or_seed.integers(len(pairs)))
    elif isinstance(rng_or_seed, random.Random):
        index = rng_or_seed.randrange(len(pairs))
    elif isinstance(rng_or_seed, (int, np.integer)) and not isinstance(rng_or_seed, bool):
        index = int(np.random.default_rng(int(rng_or_seed)).integers(len(pairs)))
    else:
        raise TypeError(
            f"rng_or_seed must be an int seed, a numpy Generator or a random.Random, got {type(rng_or_seed).__name__}"
        )
    frames, resolution = pairs[index]
    per_frame = cfg.tokens_per_frame(resolution)
    return FlexiblePlan(frames, resolution, per_frame, frames * per_frame, cfg.patch_size, cfg.merge_size)


def plan_grid(plan: FlexiblePlan, height: int, width: int) -> GridSize:
    """The per-frame merged-token grid of a ``height`` x ``width`` video under ``plan``.

    R is a square-equivalent budget: at most (R / unit)^2 tokens per frame, the aspect ratio kept, each side on
    the 32-px lattice (``native_grid`` with ``min_tokens=1``). A video smaller than the budget keeps its size.
    """
    return native_grid(
        height, width, patch_size=plan.patch_size, merge_size=plan.merge_size,
        min_tokens=1, max_tokens=plan.tokens_per_frame,
    )
