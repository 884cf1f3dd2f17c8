"""Tempo's Adaptive Token Allocation (ATA) as a reducer: relevance per segment -> tokens per segment -> tokens.

Shapes: T frames, S segments, N tokens, K kept.

Segments are ``segment_frames`` consecutive frames (``split``: S = ceil(T / segment_frames) segments whose sizes
differ by at most one frame). Tempo bounds a frame's share to 0.5..16 tokens; a segment of n frames gets
[ceil(0.5 n), floor(16 n)] here, with n the shortest segment's length (the allocator takes one range for all) and
the upper end capped by the fewest tokens a segment holds. The allocator (``waterfill`` by default) turns the
budget and the per-segment scores (``segment_relevance``: the model's own yes/no log-odds) into counts; without
scores every segment scores the same. Inside a segment the kept tokens are the most changing ones
(``within="change"``: FluxViT's D, which keeps original tokens at exact positions and spends a segment's share
where its content moves), an even spread (``within="uniform"``), or the segment's first k tokens in (t, row, col)
order (``within="head"``: Tempo's own rule, which keeps the first k of a segment's memory tokens; our segments hold
encoder tokens, not learnt memory tokens, so the head is the start of the segment's first frames).
``allocator="tempo"`` with ``within="head"`` is Tempo's ATA as its code runs it, spending at most the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from tempflex.budget.base import BudgetAllocator, BudgetError, VisualTokens, build, register
from tempflex.budget.reducers import UniformKeep, check_budget, frame_slices
from tempflex.budget.scores import split, temporal_change, top_k


@register("reducer", "ata")
@dataclass(frozen=True)
class AdaptiveAllocation:
    segment_frames: int = 4  # consecutive frames per segment
    min_per_frame: float = 0.5  # Tempo's lower bound, tokens a frame
    max_per_frame: float = 16.0  # Tempo's upper bound, tokens a frame
    within: Literal["change", "uniform", "head"] = "change"  # how a segment spends its share
    allocator: Any = "waterfill"  # a BudgetAllocator, or the registered name of one (default options)

    def __post_init__(self) -> None:
        if self.segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {self.segment_frames}")
        if not 0 <= self.min_per_frame <= self.max_per_frame:
            raise ValueError(f"need 0 <= min_per_frame <= max_per_frame, got {self.min_per_frame}, "
                             f"{self.max_per_frame}")
        if self.within not in ("change", "uniform", "head"):
            raise ValueError(f"within must be 'change', 'uniform' or 'head', got {self.within!r}")
        if isinstance(self.allocator, str):
            object.__setattr__(self, "allocator", build("allocator", self.allocator))
        if not isinstance(self.allocator, BudgetAllocator):
            raise TypeError(f"allocator must be a BudgetAllocator or a name, got {type(self.allocator).__name__}")

    def segments(self, frames: int) -> list[range]:
        return split(frames, math.ceil(frames / self.segment_frames))

    def bounds(self, segments: list[range], capacity: list[int]) -> tuple[int, int]:
        """(min_per, max_per) tokens a segment, shared by all segments."""
        n = min(len(s) for s in segments)
        hi = min(math.floor(self.max_per_frame * n), min(capacity))
        return min(math.ceil(self.min_per_frame * n), hi), hi

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        budget = check_budget(budget)
        segments = self.segments(tokens.frames)
        if scores is None:
            scores = torch.zeros(len(segments))
        if tuple(scores.shape) != (len(segments),):
            raise BudgetError(f"ata takes one score per segment, ({len(segments)},), got {tuple(scores.shape)}")
        slices = frame_slices(tokens)
        spans = [range(slices[s.start].start, slices[s.stop - 1].stop) for s in segments]  # token ranges
        lo, hi = self.bounds(segments, [len(r) for r in spans])
        counts = self.allocator.allocate(scores.detach().cpu().float(), budget, lo, hi).tolist()
        change = temporal_change(tokens) if self.within == "change" else None
        keep = []
        for span, count in zip(spans, counts):
            keep.append(self._within(tokens, span, int(count), change))
        return tokens.select(torch.cat(keep))

    def _within(self, tokens: VisualTokens, span: range, count: int, change: torch.Tensor | None) -> torch.Tensor:
        if change is not None:
            return top_k(change[span.start : span.stop], count) + span.start
        if self.within == "head":
            return torch.arange(span.start, span.start + min(count, len(span)))
        part = tokens.select(torch.arange(span.start, span.stop))
        kept = UniformKeep().reduce(part, count)
        return torch.searchsorted(tokens.keys, kept.keys)  # back to indices in ``tokens``
