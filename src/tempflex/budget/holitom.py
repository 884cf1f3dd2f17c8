"""``holitom``: HoliTom's outer-LLM holistic token merging (Shao et al. 2025), under an exact budget.

Shapes: T frames, N tokens, S segments, W longest segment, K kept.

HoliTom's outer-LLM step, as its paper gives it:
1. **Global redundancy-aware temporal segmentation.** A token is temporally redundant between frames t-1 and t
   when its cosine similarity to the token at the same place exceeds tau. A segment [i, j) can merge every place
   that stays redundant through the whole segment into one token, which saves (j - i - 1) tokens per such place.
   Dynamic programming over the cut points chooses the segmentation of the whole video that saves the most
   (segments at most ``max_segment`` frames long): global, rather than a fixed window or a greedy cut.
2. **Temporal merging.** In each segment the places redundant throughout are averaged over the segment's frames
   into one token, kept at the segment's first frame.
3. **Spatial merging.** What remains is merged inside each frame (HoliTom clusters it with density-peak
   clustering, DPC-KNN; here ToMe's bipartite soft matching, which reaches an exact count).
HoliTom's inner-LLM step (merging similar tokens inside the LLM's early layers) changes the LLM's forward pass,
which a reducer does not own; it is not applied here.

The budget: if the temporal merges save more than N - K, only the most redundant places (highest minimum
similarity) of the chosen segmentation are merged, the last one over just enough of its frames to land on K;
otherwise all are merged and the spatial step takes each frame down in proportion to what it holds. Either way
exactly min(budget, N) tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from tempflex.budget.base import VisualTokens, register
from tempflex.budget.merging import Merge, bipartite_merge, capped_shares
from tempflex.budget.reducers import check_budget, frame_slices
from tempflex.budget.scores import neighbours


def pair_similarity(tokens: VisualTokens) -> torch.Tensor:
    """(T, h*w) cosine similarity of the token at each place of frame t to the one at the same place of frame
    t - 1; -inf where either is missing (and for frame 0)."""
    h, w = tokens.grid
    sim = torch.full((tokens.frames, h * w), -torch.inf)
    prev, _ = neighbours(tokens)
    has = prev >= 0
    x = tokens.tokens.detach().float().cpu()
    place = tokens.positions[:, 1] * w + tokens.positions[:, 2]
    if bool(has.any()):
        cos = torch.nn.functional.cosine_similarity(x[has], x[prev[has]], dim=-1)
        sim[tokens.positions[has, 0], place[has]] = cos
    return sim


def segmentation(sim: torch.Tensor, tau: float, max_segment: int) -> list[range]:
    """The cut of T frames into segments of at most ``max_segment`` frames that maximises the tokens saved,
    sum over segments of (len - 1) x (places redundant through the segment); ties to fewer, earlier cuts."""
    frames = sim.shape[0]
    redundant = sim > tau  # (T, P): frame t repeats frame t - 1 at that place
    best = [0] + [-1] * frames  # best[j]: most saved over frames [0, j)
    cut = [0] * (frames + 1)
    for j in range(1, frames + 1):
        through = torch.ones(sim.shape[1], dtype=torch.bool)
        for i in range(j - 1, max(j - max_segment, 0) - 1, -1):  # segment [i, j), growing to the left
            saved = best[i] + (j - i - 1) * int(through.sum())
            if saved > best[j]:
                best[j], cut[j] = saved, i
            through &= redundant[i]  # frame i joins: it must repeat frame i - 1 for [i - 1, j)
    segments, j = [], frames
    while j > 0:
        segments.append(range(cut[j], j))
        j = cut[j]
    return segments[::-1]


@register("reducer", "holitom")
@dataclass(frozen=True)
class HoliTom:
    merges: ClassVar[bool] = True

    tau: float = 0.8  # cosine similarity above which a place repeats the previous frame (the paper's tau)
    max_segment: int = 16  # longest segment the segmentation may choose, in frames

    def __post_init__(self) -> None:
        if not -1.0 <= self.tau <= 1.0:
            raise ValueError(f"tau is a cosine similarity in [-1, 1], got {self.tau}")
        if self.max_segment < 1:
            raise ValueError(f"max_segment must be >= 1, got {self.max_segment}")

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        state = Merge.start(tokens)
        sim = pair_similarity(tokens)
        columns = self._columns(tokens, sim, segmentation(sim, self.tau, self.max_segment))
        excess = len(tokens) - k
        for _, members in columns:  # strongest redundancy first
            if excess <= 0:
                break
            members = members[: min(len(members), excess + 1)]  # the last one over just enough frames
            state.into(members[1:], members[:1].expand(len(members) - 1))
            excess -= len(members) - 1
        slices = frame_slices(tokens)
        alive = [int(state.alive[s.start : s.stop].sum()) for s in slices]
        for frame, count in zip(slices, capped_shares(alive, alive, k)):
            bipartite_merge(state, torch.arange(frame.start, frame.stop), count)
        return state.result(tokens)

    def _columns(self, tokens: VisualTokens, sim: torch.Tensor,
                 segments: list[range]) -> list[tuple[float, torch.Tensor]]:
        """(strength, token indices in frame order) of every place redundant through a segment of >= 2 frames,
        strongest (highest minimum similarity) first, ties to the earlier segment and place."""
        dense = tokens.frame_index().flatten(1)  # (T, h*w)
        columns = []
        for seg in segments:
            if len(seg) < 2:
                continue
            inner = sim[seg.start + 1 : seg.stop]  # (len - 1, P)
            strength = inner.min(dim=0).values  # (P,)
            for place in (strength > self.tau).nonzero().flatten().tolist():
                columns.append((float(strength[place]), dense[seg.start : seg.stop, place]))
        return sorted(columns, key=lambda c: -c[0])
