"""Frame selectors: which of the decoded frames to encode at all.

Shapes: T frames available, H x W pixels, G groups.

- ``uniform``: the frame nearest the centre of each of ``want`` equal strides (``tempflex.video.sampling``'s
  rule, on indices).
- ``dynamic``: FluxViT's token optimisation at the frame level: decode densely (say 4x the frames you want), then
  keep the frames that change most. Change is the mean absolute difference of a small grey thumbnail to the
  previous frame (the first frame: to the next one); like the token-level group-dynamic selector, the frames are
  split into ``groups`` consecutive groups whose shares are proportional to their size, so that one burst of
  motion cannot take every frame and the whole video stays covered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tempflex.budget.base import BudgetError, register
from tempflex.budget.scores import proportional, split, strided, top_k


def _count(available: int | Sequence[float]) -> int:
    count = available if isinstance(available, int) else len(available)
    if count < 1:
        raise BudgetError(f"no frames to select from ({count})")
    return count


def _want(want: int) -> int:
    if isinstance(want, bool) or not isinstance(want, int) or want < 1:
        raise BudgetError(f"want must be a positive number of frames, got {want!r}")
    return want


@register("selector", "uniform")
@dataclass(frozen=True)
class UniformFrames:
    def select(
        self, available: int | Sequence[float], want: int, *, frames: torch.Tensor | None = None,
        query: str | None = None,
    ) -> list[int]:
        count, want = _count(available), _want(want)
        return list(range(count)) if want >= count else strided(count, want)


def frame_change(frames: torch.Tensor | np.ndarray, thumb: int = 32) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T,) mean |grey_t - grey_{t-1}| on a thumbnail of at most ``thumb`` px a side;
    frame 0 takes its change to frame 1, a single frame scores 0."""
    x = torch.as_tensor(np.asarray(frames)).float().mean(dim=-1).unsqueeze(1)  # (T, 1, H, W) grey
    size = (min(thumb, x.shape[2]), min(thumb, x.shape[3]))
    x = torch.nn.functional.adaptive_avg_pool2d(x, size).flatten(1)  # (T, h*w)
    if x.shape[0] == 1:
        return torch.zeros(1)
    diff = (x[1:] - x[:-1]).abs().mean(dim=1)  # (T - 1,)
    return torch.cat([diff[:1], diff])


@register("selector", "dynamic")
@dataclass(frozen=True)
class DynamicFrames:
    groups: int = 4  # consecutive groups that share the frames in proportion to their size (FluxViT: 4)
    thumb: int = 32  # side of the grey thumbnail the change is measured on

    def __post_init__(self) -> None:
        if self.groups < 1 or self.thumb < 1:
            raise ValueError(f"groups and thumb must be >= 1, got {self.groups} and {self.thumb}")

    def select(
        self, available: int | Sequence[float], want: int, *, frames: torch.Tensor | None = None,
        query: str | None = None,
    ) -> list[int]:
        count, want = _count(available), _want(want)
        if frames is None:
            raise BudgetError("the dynamic frame selector needs the decoded frames (frames=...)")
        if len(frames) != count:
            raise BudgetError(f"{len(frames)} frames given but {count} available")
        if want >= count:
            return list(range(count))
        change = frame_change(frames, self.thumb)
        parts = split(count, self.groups)
        picked: list[int] = []
        for part, quota in zip(parts, proportional(want, [len(p) for p in parts])):
            picked += (top_k(change[part.start : part.stop], quota) + part.start).tolist()
        return sorted(picked)
