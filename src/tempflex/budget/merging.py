"""Token merging shared by the training-free related methods, and ``tome``: ToMe's bipartite soft matching inside
each frame, as AIM applies it to a video LLM's visual tokens.

Shapes: T frames, N tokens in, n tokens of one set, K kept, E width, A/B the two halves of a bipartite split.

A merging reducer returns ``VisualTokens`` whose tokens are size-weighted averages of the tokens merged into them,
each at the recorded position of the token it was merged into (a position of the input), so positions, times and
the (t, row, col) order keep their meaning; it says so with ``merges = True``. Merging changes no count rule: the
output has exactly min(budget, N) tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from tempflex.budget.base import VisualTokens, register
from tempflex.budget.reducers import check_budget, frame_slices
from tempflex.budget.scores import neighbours, spread, strided

BISECTION_STEPS = 100


@dataclass
class Merge:
    """Running state of a merge over one clip: every input token's current value and size (how many input tokens
    it stands for); ``alive`` marks the tokens not yet merged into another."""

    values: torch.Tensor  # (N, E) float32
    sizes: torch.Tensor  # (N,) float32
    alive: torch.Tensor  # (N,) bool

    @classmethod
    def start(cls, tokens: VisualTokens) -> Merge:
        n = len(tokens)
        return cls(tokens.tokens.detach().float().cpu().clone(), torch.ones(n), torch.ones(n, dtype=torch.bool))

    def into(self, sources: torch.Tensor, targets: torch.Tensor) -> None:
        """Merge each of ``sources`` (global indices) into the matching ``targets``: size-weighted averages, so
        several sources may merge into one target at once."""
        if not len(sources):
            return
        hit, slot = torch.unique(targets, return_inverse=True)  # (u,), (r,): each source's target among them
        weight = self.sizes[sources]  # (r,)
        total = torch.zeros(len(hit), self.values.shape[1]).index_add_(0, slot, self.values[sources] * weight[:, None])
        mass = torch.zeros(len(hit)).index_add_(0, slot, weight)  # (u,)
        own = self.values[hit] * self.sizes[hit, None]  # (u, E)
        self.values[hit] = (own + total) / (self.sizes[hit] + mass)[:, None]
        self.sizes[hit] += mass
        self.alive[sources] = False

    def drop(self, index: torch.Tensor) -> None:
        self.alive[index] = False

    def result(self, tokens: VisualTokens) -> VisualTokens:
        """The alive tokens with their merged values, in (t, row, col) order, on the input's device and dtype."""
        index = self.alive.nonzero().flatten()
        kept = tokens.select(index)
        values = self.values[index].to(tokens.tokens.device, tokens.tokens.dtype)
        return VisualTokens(values, kept.positions, kept.timestamps, kept.frames, kept.grid)


def bipartite_merge(state: Merge, members: torch.Tensor, target: int) -> None:
    """ToMe's bipartite soft matching (Bolya et al. 2023, section 3) on the tokens ``members`` (global indices, in
    order) until ``target`` of them are alive: alternate tokens form A (even places) and B (odd places); each A
    token's edge goes to its most similar B token (cosine); the r = min(|A|, excess) A tokens with the strongest
    edges merge into their B token (size-weighted mean). Rounds repeat on what is left, since one round removes at
    most half; ties go to the earlier token. ``target`` 0 drops them all."""
    members = members[state.alive[members]]
    if target <= 0:
        state.drop(members)
        return
    while len(members) > target:
        if len(members) == 1:
            break
        a, b = members[0::2], members[1::2]  # (|A|,), (|B|,)
        xa = torch.nn.functional.normalize(state.values[a], dim=-1)
        xb = torch.nn.functional.normalize(state.values[b], dim=-1)
        best, match = (xa @ xb.T).max(dim=1)  # (|A|,): strongest edge of each A token
        r = min(len(a), len(members) - target)
        order = torch.sort(-best, stable=True).indices[:r]
        state.into(a[order], b[match[order]])
        members = members[state.alive[members]]


def capped_shares(weights: Sequence[float], caps: Sequence[int], total: int) -> list[int]:
    """Integers c_i <= caps_i summing to min(total, sum caps), proportional to ``weights`` (>= 0) where the caps
    allow: the level lam with sum min(lam w_i, cap_i) = total by bisection, floors, then the largest remainders
    (ties to the larger weight, then the earlier item); zero weights get only what the others cannot take."""
    total = min(total, sum(caps))
    w = torch.tensor([max(float(v), 0.0) for v in weights], dtype=torch.float64)
    cap = torch.tensor(list(caps), dtype=torch.float64)
    if total <= 0 or not len(caps):
        return [0] * len(caps)
    if float(w.sum()) <= 0:
        return spread(total, list(caps))
    low, high = 0.0, 1.0
    while float(torch.minimum(high * w, cap).sum()) < total and high < 1e300:
        high *= 2.0
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if float(torch.minimum(mid * w, cap).sum()) < total else (low, mid)
    shares = torch.minimum(high * w, cap)
    counts = shares.floor().long().tolist()
    frac = (shares - shares.floor()).tolist()
    order = sorted(range(len(caps)), key=lambda i: (-frac[i], -float(w[i]), i))
    for i in order:
        if sum(counts) >= total:
            break
        if counts[i] < caps[i]:
            counts[i] += 1
    for i in sorted(range(len(caps)), key=lambda i: (-float(w[i]), i)):  # float error or zero weights left a gap
        while sum(counts) < total and counts[i] < caps[i]:
            counts[i] += 1
    while sum(counts) > total:
        i = max((i for i in range(len(caps)) if counts[i] > 0), key=lambda i: (counts[i] - float(shares[i]), i))
        counts[i] -= 1
    return counts


def pool_frame(state: Merge, tokens: VisualTokens, members: torch.Tensor, keep: int) -> None:
    """Lower one frame's resolution to ``keep`` tokens: ``keep`` evenly strided tokens of the frame's raster order
    stay, every other token is averaged into the nearest of them on the (row, col) grid (ties to the earlier), i.e.
    area pooling around the kept places (F2C's and B-VLLM's lower resolution, as a merge)."""
    members = members[state.alive[members]]
    if keep <= 0:
        state.drop(members)
        return
    if keep >= len(members):
        return
    stay = members[torch.tensor(strided(len(members), keep))]
    rest = members[~torch.isin(members, stay)]
    where = tokens.positions[:, 1:].float()  # (N, 2)
    dist = torch.cdist(where[rest], where[stay])  # (n - keep, keep)
    state.into(rest, stay[dist.argmin(dim=1)])


def condense(tokens: VisualTokens, counts: Sequence[int], how: str = "merge") -> VisualTokens:
    """Each frame t of the clip down to ``counts[t]`` tokens by ToMe merging (``how="merge"``) or pooling
    (``"pool"``); a frame with 0 loses all its tokens."""
    state = Merge.start(tokens)
    for frame, count in zip(frame_slices(tokens), counts):
        members = torch.arange(frame.start, frame.stop)
        if how == "pool":
            pool_frame(state, tokens, members, int(count))
        else:
            bipartite_merge(state, members, int(count))
    return state.result(tokens)


def frame_novelty(tokens: VisualTokens) -> torch.Tensor:
    """(T,) 1 - mean cosine similarity of a frame's tokens to the same places in the previous frame present; a
    frame with no previous frame (or none of its places in it) scores 1, a frame without tokens 0."""
    prev, _ = neighbours(tokens)
    x = tokens.tokens.detach().float().cpu()
    frame = tokens.positions[:, 0]
    has = prev >= 0
    cos = torch.zeros(len(tokens))
    if bool(has.any()):
        cos[has] = torch.nn.functional.cosine_similarity(x[has], x[prev[has]], dim=-1)
    total = torch.zeros(tokens.frames).index_add_(0, frame, cos)
    counted = torch.bincount(frame[has], minlength=tokens.frames).float()
    novelty = torch.where(counted > 0, 1 - total / counted.clamp(min=1), torch.ones(tokens.frames))
    present = tokens.tokens_per_frame() > 0
    return torch.where(present, novelty, torch.zeros(tokens.frames))


@register("reducer", "tome")
@dataclass(frozen=True)
class FrameToMe:
    """ToMe inside each frame (AIM, "Adaptive Inference of Multi-Modal LLMs via Token Merging and Pruning", its
    before-the-LLM step). AIM merges the visual tokens of each frame by ToMe's bipartite soft matching: split a
    frame's tokens alternately into A and B, link each A token to its most similar B token, merge the r most
    similar pairs (size-weighted means), repeat until the frame's target. Here the targets come from the budget:
    K = min(budget, N) spread evenly over the frames that have tokens (counts differ by at most one), so the
    output is exactly K tokens. AIM's second step, PageRank pruning of text-irrelevant tokens inside the LLM's
    layers, changes the LLM's forward pass and is not part of a reducer. Similarity is the cosine of the merged
    tokens themselves (ToMe uses the attention keys of a ViT; the tokens here have left the encoder)."""

    merges: ClassVar[bool] = True

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        sizes = [len(s) for s in frame_slices(tokens)]
        return condense(tokens, spread(k, sizes), "merge")

