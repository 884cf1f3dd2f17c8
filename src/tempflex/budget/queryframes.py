"""Query-aware frame and clip choice: ``date`` (DATE's temporal-aware similarity sampling), ``f2c`` (F2C's key
clips at a constant token count) and ``bvllm`` (B-VLLM's text-conditioned frames, temporal merging, spatial
sampling).

Shapes: T frames, P frames that keep tokens, N tokens, K kept, L clip length.

Each of these papers scores frames against the question with a CLIP-like text-image model. Here the score of a
frame is the model's own relevance (``tempflex.budget.relevance.segment_relevance``: the log-odds of "Yes" to "Is
this part of the video relevant to the question?" with that frame's tokens), which the pipeline asks for because
the reducers are query-aware (``segments``: one frame each). Without scores every frame scores the same and the
choice falls back to even coverage. All keep exactly min(budget, N) tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from tempflex.budget.base import BudgetError, VisualTokens, register
from tempflex.budget.merging import Merge, condense, pool_frame
from tempflex.budget.reducers import check_budget, frame_slices
from tempflex.budget.scores import spread, strided


def frame_scores(tokens: VisualTokens, scores: torch.Tensor | None, name: str) -> torch.Tensor:
    if scores is None:
        return torch.zeros(tokens.frames)
    if tuple(scores.shape) != (tokens.frames,):
        raise BudgetError(f"{name} takes one score per frame, ({tokens.frames},), got {tuple(scores.shape)}")
    return scores.detach().float().cpu()


def by_score(frames: list[int], scores: torch.Tensor) -> list[int]:
    """``frames`` from the highest score down, ties to the earlier frame."""
    return sorted(frames, key=lambda t: (-float(scores[t]), t))


def per_frame(frames: int) -> list[range]:
    return [range(t, t + 1) for t in range(frames)]


def tass(scores: torch.Tensor, present: list[int], want: int) -> list[int]:
    """DATE's temporal-aware similarity sampling: take frames from the most similar down, skipping any closer than
    ``gap`` frames to one already taken; ``gap`` starts at the even spacing P // want and shrinks by one until
    ``want`` frames are taken (gap 0 is plain top-k). Returns sorted frame indices."""
    want = min(want, len(present))
    order = by_score(present, scores)
    for gap in range(max(len(present) // max(want, 1), 1), -1, -1):
        taken: list[int] = []
        for t in order:
            if all(abs(t - s) >= gap for s in taken):
                taken.append(t)
                if len(taken) == want:
                    return sorted(taken)
    return sorted(order[:want])


@register("reducer", "date")
@dataclass(frozen=True)
class DATE:
    """DATE ("Dynamic Absolute Time Enhancement for Long Video Understanding"): (1) timestamp injection: the text of
    each kept frame's absolute time is written before its tokens, so the LLM reads time as text; (2) temporal-aware
    similarity sampling (TASS): frames are chosen by their similarity to the query under a minimum temporal gap
    that starts at even spacing and is relaxed until enough frames are found, so the chosen frames are relevant and
    still spread over the video. Step (1) is the pipeline's timestamp encoder: run ``date:N,timestamps=frame``
    (the tags count against the budget). Step (2) here: ceil(K / frame_tokens) frames by TASS (``frame_tokens``
    None: a frame's own token count), K spread over them, each frame merged down to its share by ToMe matching."""

    merges: ClassVar[bool] = True

    frame_tokens: int | None = None  # tokens a chosen frame keeps; None: all it has

    def __post_init__(self) -> None:
        if self.frame_tokens is not None and self.frame_tokens < 1:
            raise ValueError(f"frame_tokens must be >= 1, got {self.frame_tokens}")

    def segments(self, frames: int) -> list[range]:
        return per_frame(frames)

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        s = frame_scores(tokens, scores, "date")
        sizes = [len(x) for x in frame_slices(tokens)]
        present = [t for t, n in enumerate(sizes) if n]
        if not k:
            return condense(tokens, [0] * tokens.frames)
        per = self.frame_tokens or max(1, len(tokens) // len(present))
        chosen = tass(s, present, math.ceil(k / per))
        while sum(sizes[t] for t in chosen) < k:  # frames smaller than planned: take more, by the same rule
            chosen = tass(s, present, len(chosen) + 1)
        counts = [0] * tokens.frames
        for t, c in zip(chosen, spread(k, [sizes[t] for t in chosen])):
            counts[t] = c
        return condense(tokens, counts, "merge")


@register("reducer", "f2c")
@dataclass(frozen=True)
class FramesToClips:
    """F2C ("From Frames to Clips: Efficient Key Clip Selection for Long-Form Video Understanding"): a key frame
    alone loses motion, so key *clips* of consecutive frames are chosen around the query-relevant frames, and to
    keep the token count constant each frame's resolution is lowered as the clips grow (adaptive resolution).

    Here the present frames are cut into candidate clips of L consecutive frames; a clip scores its best frame's
    relevance; the ``clips`` best clips are kept. L is the longest in 1..``max_clip_frames`` at which every kept
    frame still gets at least ``min_frame_tokens`` (K / (clips x L)), i.e. resolution is traded for clip length
    down to that floor; K is spread over the kept frames and each frame is pooled to its share (lower resolution:
    evenly strided tokens stay, every other token is averaged into the nearest of them)."""

    merges: ClassVar[bool] = True

    clips: int = 4  # key clips kept
    max_clip_frames: int = 8  # longest clip
    min_frame_tokens: int = 4  # least tokens a frame of a clip may be pooled to

    def __post_init__(self) -> None:
        if self.clips < 1 or self.max_clip_frames < 1 or self.min_frame_tokens < 1:
            raise ValueError(f"clips, max_clip_frames and min_frame_tokens must be >= 1, got {self.clips}, "
                             f"{self.max_clip_frames}, {self.min_frame_tokens}")

    def segments(self, frames: int) -> list[range]:
        return per_frame(frames)

    def clip_length(self, present: int, k: int) -> int:
        best = 1
        for length in range(1, min(self.max_clip_frames, present) + 1):
            clips = min(self.clips, present // length)
            if clips and k / (clips * length) >= self.min_frame_tokens:
                best = length
        return best

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        s = frame_scores(tokens, scores, "f2c")
        sizes = [len(x) for x in frame_slices(tokens)]
        present = [t for t, n in enumerate(sizes) if n]
        counts = [0] * tokens.frames
        if k:
            length = self.clip_length(len(present), k)
            candidates = [present[i : i + length] for i in range(0, len(present), length)]
            ranked = sorted(range(len(candidates)), key=lambda c: (-max(float(s[t]) for t in candidates[c]), c))
            kept: list[int] = []
            for taken, c in enumerate(ranked):  # the best clips; more when the kept frames cannot hold K
                if taken >= self.clips and sum(sizes[t] for t in kept) >= k:
                    break
                kept = sorted(kept + candidates[c])
            for t, c in zip(kept, spread(k, [sizes[t] for t in kept])):
                counts[t] = c
        return condense(tokens, counts, "pool")


@register("reducer", "bvllm")
@dataclass(frozen=True)
class BalancedVLLM:
    """B-VLLM ("B-VLLM: A Vision Large Language Model with Balanced Spatio-Temporal Tokens"): (1) text-conditioned
    adaptive frame selection keeps the frames most relevant to the question; (2) temporal frame token merging
    de-duplicates selected frames that repeat their predecessor; (3) spatial token sampling brings each frame to its
    share, and (4) optional spatial token merging folds the unsampled tokens into the sampled ones, so the count is
    controlled exactly. B-VLLM learns (1) and (3); training-free here: (1) the top ceil(K / ``frame_tokens``)
    frames by relevance; (2) a chosen frame whose mean token has cosine similarity above ``merge_threshold`` to the
    previous chosen frame's is merged into it place by place (its tokens into the nearest places of that frame),
    and the next best frames are added while the survivors hold fewer than K tokens; (3) K spread over the
    survivors, evenly strided tokens per frame; (4) with ``spatial_merge`` the rest of a frame is averaged into its
    nearest sampled token, else dropped."""

    merges: ClassVar[bool] = True

    frame_tokens: int = 16  # tokens a selected frame is planned to keep
    merge_threshold: float = 0.9  # cosine of the frames' mean tokens above which a frame merges into the previous
    spatial_merge: bool = True  # fold unsampled tokens into sampled ones (else drop them)

    def __post_init__(self) -> None:
        if self.frame_tokens < 1:
            raise ValueError(f"frame_tokens must be >= 1, got {self.frame_tokens}")
        if not -1.0 <= self.merge_threshold <= 1.0:
            raise ValueError(f"merge_threshold is a cosine similarity in [-1, 1], got {self.merge_threshold}")

    def segments(self, frames: int) -> list[range]:
        return per_frame(frames)

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        s = frame_scores(tokens, scores, "bvllm")
        slices = frame_slices(tokens)
        present = by_score([t for t, x in enumerate(slices) if len(x)], s)
        x = tokens.tokens.detach().float().cpu()
        means = {t: x[slices[t].start : slices[t].stop].mean(dim=0) for t in present}
        take = min(len(present), math.ceil(k / self.frame_tokens)) if k else 0
        while True:
            chosen = sorted(present[:take])
            into = self._duplicates(chosen, means)  # frame -> the earlier chosen frame it merges into
            survivors = [t for t in chosen if t not in into]
            if sum(len(slices[t]) for t in survivors) >= k or take >= len(present):
                break
            take += 1
        while sum(len(slices[t]) for t in survivors) < k:  # a near-static video: undo the weakest merges
            weakest = min(into, key=lambda t: (self._similarity(means, t, into[t]), t))
            del into[weakest]
            survivors = sorted([*survivors, weakest])
        state = Merge.start(tokens)
        where = tokens.positions[:, 1:].float()
        for t, target in into.items():
            src, dst = torch.arange(slices[t].start, slices[t].stop), torch.arange(slices[target].start,
                                                                                  slices[target].stop)
            state.into(src, dst[torch.cdist(where[src], where[dst]).argmin(dim=1)])
        shares = dict(zip(survivors, spread(k, [len(slices[t]) for t in survivors])))
        for t, frame in enumerate(slices):
            members = torch.arange(frame.start, frame.stop)
            count = shares.get(t, 0)
            if self.spatial_merge:
                pool_frame(state, tokens, members, count)
            else:
                alive = members[state.alive[members]]
                state.drop(alive[~torch.isin(torch.arange(len(alive)), torch.tensor(strided(len(alive), count),
                                                                                   dtype=torch.long))])
        return state.result(tokens)

    @staticmethod
    def _similarity(means: dict[int, torch.Tensor], a: int, b: int) -> float:
        return float(torch.nn.functional.cosine_similarity(means[a], means[b], dim=0))

    def _duplicates(self, chosen: list[int], means: dict[int, torch.Tensor]) -> dict[int, int]:
        into: dict[int, int] = {}
        last = None
        for t in chosen:
            if last is not None and self._similarity(means, t, last) > self.merge_threshold:
                into[t] = last
                continue
            last = t
        return into
