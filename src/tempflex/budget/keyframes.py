"""Content-only structure of the video as the budget's guide: ``kffocus`` (keyframes and per-frame condensation
ratios from temporal redundancy) and ``scenetilling`` (VideoLLaMB's segmentation into semantic units).

Shapes: T frames, N tokens, E width, G gaps between frames that keep tokens, S scenes, K kept.
Both are training-free, need no query, merge (``merges = True``) and keep exactly min(budget, N) tokens.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import torch

from tempflex.budget.base import VisualTokens, register
from tempflex.budget.merging import Merge, bipartite_merge, capped_shares, condense, frame_novelty
from tempflex.budget.reducers import check_budget, frame_slices
from tempflex.budget.scores import split


@register("reducer", "kffocus")
@dataclass(frozen=True)
class KeyframeFocus:
    """KFFocus ("keyframe focus" token condensation for video LLMs), training-free part. Its paper: frames that
    repeat their predecessors carry little new; keyframes are picked by temporal redundancy, and each frame is
    condensed at its own ratio, keyframes least, redundant frames most, so the tokens go where the video changes.

    Here: a frame's novelty is 1 - the mean cosine similarity of its tokens to the same places of the previous frame
    (1 for the first frame). The frames are cut into clips of ``clip_frames``; each clip's most novel frame is its
    keyframe. Weights: ``key_weight`` for a keyframe, max(novelty / the largest novelty, ``min_weight``) otherwise;
    K = min(budget, N) is shared in proportion to the weights, no frame above what it holds (the excess flows on).
    Each frame is condensed to its share by ToMe merging (KFFocus condenses by merging similar tokens)."""

    merges: ClassVar[bool] = True

    clip_frames: int = 4  # frames per clip; one keyframe each
    key_weight: float = 2.0  # a keyframe's weight (the others' weights are at most 1)
    min_weight: float = 0.25  # the least weight of a non-key frame, so a static frame is condensed, not erased

    def __post_init__(self) -> None:
        if self.clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {self.clip_frames}")
        if not (self.key_weight >= 1.0 and 0.0 <= self.min_weight <= 1.0):
            raise ValueError(f"need key_weight >= 1 and 0 <= min_weight <= 1, got {self.key_weight}, "
                             f"{self.min_weight}")

    def weights(self, tokens: VisualTokens) -> tuple[torch.Tensor, list[int]]:
        """(T,) condensation weights (0 for frames without tokens) and the keyframes."""
        novelty = frame_novelty(tokens)  # (T,)
        present = tokens.tokens_per_frame() > 0
        weights = (novelty / novelty.max().clamp(min=1e-12)).clamp(min=self.min_weight, max=1.0)
        keys = []
        for clip in split(tokens.frames, -(-tokens.frames // self.clip_frames)):
            inside = novelty[clip.start : clip.stop].masked_fill(~present[clip.start : clip.stop], -1.0)
            if bool(present[clip.start : clip.stop].any()):
                keys.append(clip.start + int(torch.argmax(inside)))  # argmax: the first of equal maxima
        weights[keys] = self.key_weight
        return weights * present, keys

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        weights, _ = self.weights(tokens)
        sizes = [len(s) for s in frame_slices(tokens)]
        return condense(tokens, capped_shares(weights.tolist(), sizes, k), "merge")


def scene_cuts(features: torch.Tensor, alpha: float) -> list[int]:
    """TextTiling depth scores on (F, E) frame features: c_g = cos(f_g, f_g+1) at each of the G = F - 1 gaps;
    depth_g = (hl - c_g) + (hr - c_g), hl / hr the peaks reached by climbing from g to the left / right while the
    similarity rises; a gap is a cut when depth_g > mean + alpha * std of the depths (and > 0). Returns the
    indices (into the F frames) where a new scene starts."""
    if features.shape[0] < 2:
        return []
    f = torch.nn.functional.normalize(features.float(), dim=-1)
    c = (f[:-1] * f[1:]).sum(dim=-1).tolist()  # (G,)
    depth = []
    for g, here in enumerate(c):
        left = g
        while left > 0 and c[left - 1] >= c[left]:
            left -= 1
        right = g
        while right < len(c) - 1 and c[right + 1] >= c[right]:
            right += 1
        depth.append((c[left] - here) + (c[right] - here))
    d = torch.tensor(depth)
    threshold = float(d.mean() + alpha * (d.std() if len(depth) > 1 else 0.0))
    return [g + 1 for g, v in enumerate(depth) if v > threshold and v > 1e-6]


@register("reducer", "scenetilling")
@dataclass(frozen=True)
class SceneTilling:
    """VideoLLaMB's SceneTilling (Wang et al. 2024, "VideoLLaMB: Long Video Understanding with Recurrent Memory
    Bridges"): the video is cut into semantic units with TextTiling's depth scores over the cosine similarity of
    adjacent frames' features (a cut where the similarity dips deeper than mean + alpha * std below the peaks on
    either side); VideoLLaMB then feeds the units one by one through its recurrent memory bridge (trained, not here).

    Training-free budget use of the same segmentation: a frame's feature is its mean token; every scene gets an
    equal share of K = min(budget, N) (as far as its tokens allow, the rest flows to the others), so that a short
    but distinct scene is not outvoted by a long static one; inside a scene the tokens are merged across its frames
    and places together by ToMe's bipartite soft matching (in (t, row, col) order), so repeated content inside a
    unit merges over time first."""

    merges: ClassVar[bool] = True

    alpha: float = 0.5  # cut threshold: depth > mean + alpha * std

    def scenes(self, tokens: VisualTokens) -> list[range]:
        """Token ranges (in ``tokens``) of the scenes, over the frames that keep tokens."""
        slices = [s for s in frame_slices(tokens) if len(s)]
        if not slices:
            return []
        x = tokens.tokens.detach().float().cpu()
        features = torch.stack([x[s.start : s.stop].mean(dim=0) for s in slices])  # (F, E)
        starts = [0, *scene_cuts(features, self.alpha), len(slices)]
        return [range(slices[a].start, slices[b - 1].stop) for a, b in itertools.pairwise(starts)]

    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        k = min(check_budget(budget), len(tokens))
        scenes = self.scenes(tokens)
        state = Merge.start(tokens)
        sizes = [len(s) for s in scenes]
        for scene, share in zip(scenes, capped_shares([1.0] * len(scenes), sizes, k)):
            bipartite_merge(state, torch.arange(scene.start, scene.stop), share)
        return state.result(tokens)
