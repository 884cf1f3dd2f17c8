"""Token reducers that need no model: FluxViT's group-dynamic selection, TimeChat-Online's differential drop,
and the evenly spread baseline. Each keeps original tokens (a subset, in order), never more than the budget.

Shapes: T frames, h x w merged grid, N tokens in, K tokens kept, G groups.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch

from tempflex.budget.base import BudgetError, VisualTokens, register
from tempflex.budget.scores import (
    cosine_change,
    neighbours,
    proportional,
    split,
    spread,
    strided,
    temporal_change,
    top_k,
)


def check_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise BudgetError(f"a reducer's budget must be an integer >= 0, got {budget!r}")
    return budget


def frame_slices(tokens: VisualTokens) -> list[range]:
    """Per frame of the clip, the range of its tokens in ``tokens`` (tokens are in frame order)."""
    counts = tokens.tokens_per_frame().tolist()
    starts = [0]
    for c in counts:
        starts.append(starts[-1] + c)
    return [range(a, b) for a, b in itertools.pairwise(starts)]


def _check_scores(scores: torch.Tensor | None, n: int, name: str) -> None:
    if scores is not None and tuple(scores.shape) != (n,):
        raise BudgetError(f"{name} takes one score per token, ({n},), got {tuple(scores.shape)}")


@register("reducer", "flux")
@dataclass(frozen=True)
class GroupDynamic:
    """FluxViT's group-dynamic selector (section 3.1, "Double Mask Module"): D(F_t,i) = ||F_t,i - F_t-1,i||_p;
    the frames that keep tokens are split into ``groups`` consecutive groups (sizes differ by at most one frame,
    the longer first) and group g keeps its top K * n_g / N tokens by D, largest remainder to the earlier group,
    so K = min(budget, N) exactly (with equal groups: top K/N each). ``scores`` (N,) replace D when given."""

    groups: int = 4  # N of the paper; its ablation (table 2) found 4 the most robust
    p: float = 2.0  # the norm of D (the paper: L2)

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise ValueError(f"groups must be >= 1, got {self.groups}")
        if not self.p > 0:
            raise ValueError(f"p must be > 0, got {self.p}")

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        _check_scores(scores, len(tokens), "flux")
        change = temporal_change(tokens, self.p) if scores is None else scores.detach().float().cpu()
        present = [s for s in frame_slices(tokens) if len(s)]
        groups = [range(present[g.start].start, present[g.stop - 1].stop) for g in split(len(present), self.groups)]
        keep = []
        for group, quota in zip(groups, proportional(k, [len(g) for g in groups])):
            keep.append(top_k(change[group.start : group.stop], quota) + group.start)
        return tokens.select(torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long))


@register("reducer", "drop")
@dataclass(frozen=True)
class DifferentialDrop:
    """TimeChat-Online's Differential Token Drop: a token whose cosine similarity to the same place in the previous
    frame exceeds ``threshold`` is dropped (mode ``threshold``), or only the ``ratio`` most changed of the tokens
    with a previous frame are kept (mode ``ratio``). Tokens without a previous frame (the first frame) are kept,
    as DTD keeps the first frame whole. Then the budget: if more survive, the first frame's tokens come first and
    the rest by change, 1 - cos (the first frame's own order: its change to the next frame)."""

    mode: Literal["threshold", "ratio"] = "threshold"
    threshold: float = 0.9  # threshold mode: drop when cos(x_t, x_t-1) > threshold
    ratio: float = 0.2  # ratio mode: keep this fraction of the tokens that have a previous frame

    def __post_init__(self) -> None:
        if self.mode not in ("threshold", "ratio"):
            raise ValueError(f"mode must be 'threshold' or 'ratio', got {self.mode!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {self.ratio}")

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        budget = check_budget(budget)
        _check_scores(scores, len(tokens), "drop")
        change = cosine_change(tokens) if scores is None else scores.detach().float().cpu()  # (N,), 1 - cos
        has_ref = neighbours(tokens)[0] >= 0
        if self.mode == "threshold":
            keep = ~has_ref | (1 - change <= self.threshold)
        else:
            n_ref = int(has_ref.sum())
            quota = math.ceil(self.ratio * n_ref - 1e-9)
            ref_change = torch.where(has_ref, change, torch.full_like(change, -math.inf))
            keep = ~has_ref
            keep[top_k(ref_change, quota)] = True
        if int(keep.sum()) > budget:
            priority = change + 3.0 * (~has_ref)  # change is in [0, 2]: the first frame ranks above every other
            priority = torch.where(keep, priority, torch.full_like(priority, -math.inf))
            return tokens.select(top_k(priority, budget))
        return tokens.select(keep)


@register("reducer", "uniform")
@dataclass(frozen=True)
class UniformKeep:
    """The baseline: K = min(budget, N) tokens spread evenly over the frames (counts differ by at most one, the
    extra ones on evenly spaced frames) and, inside a frame, evenly over its raster order (a strided keep).
    Kept tokens are original tokens, so positions stay exact; no pooling."""

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        slices = frame_slices(tokens)
        keep = []
        for frame, count in zip(slices, spread(k, [len(s) for s in slices])):
            keep += [frame.start + i for i in strided(len(frame), count)]
        return tokens.select(keep)
