"""How to reach the wanted frames: one sequential pass, keyframe seeks, or a mix, from a cost model.

A decoder can only start at a keyframe, so reaching frame w costs decoding every frame from where the decoder is
(or from the keyframe before w after a seek) up to w. Between two consecutive wanted frames a < w there are two
ways on:
- continue decoding forward: w - a frames;
- seek to kf(w), the keyframe at or before w, and decode forward: w - kf(w) frames + ``SEEK_COST`` (the decoder
  flush, refilling the frame-thread pipeline and the demuxer's jump, in frame units).

The costs of the gaps add up independently, so choosing the cheaper way per gap gives the cheapest plan under
this model ("auto"): dense samples become one sequential pass, sparse samples from a long-GOP file become one seek
per target, and a target in the same GOP ahead of the decoder is never re-sought. "sequential" always continues
(one pass from the keyframe before the first wanted frame to the last one); "seek" re-seeks whenever the next
wanted frame lies in a later GOP. The plan works on frame indices in presentation order, from packet flags read
without decoding (``Timeline``); the estimate ignores B-frame reordering, which shifts costs by a frame or two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np

Strategy = Literal["auto", "sequential", "seek"]
STRATEGIES = ("auto", "sequential", "seek")
SEEK_COST = 6  # frames; about the decode-pipeline refill after a flush with 2-4 frame threads
PARALLEL_MAX_SHARE = 0.75  # split runs over decoders only if no group is left with more of the work than this


@dataclass
class Run:
    """Seek to frame ``seek_index`` (a keyframe), then decode forward through every frame in ``wanted``."""

    seek_index: int
    wanted: list[int] = field(default_factory=list)


def plan_runs(wanted: np.ndarray, keyframe_before: np.ndarray, strategy: Strategy = "auto") -> list[Run]:
    """Split the sorted unique ``wanted`` indices into runs; ``keyframe_before`` (N,) maps frame -> its keyframe."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    runs: list[Run] = []
    for w in (int(i) for i in wanted):
        kf = int(keyframe_before[w])
        if runs:
            a = runs[-1].wanted[-1]
            if strategy == "sequential":
                reseek = False
            elif strategy == "seek":
                reseek = kf > a
            else:
                reseek = (w - kf) + SEEK_COST < (w - a)
            if not reseek:
                runs[-1].wanted.append(w)
                continue
        runs.append(Run(seek_index=kf, wanted=[w]))
    return runs


def split_runs(runs: list[Run], parts: int) -> list[list[Run]]:
    """``runs`` cut into at most ``parts`` contiguous groups of about equal cost, for parallel decoders.

    A run costs its frames plus ``SEEK_COST``. One group (all runs on one decoder) when there is one run or
    part, or when the runs cannot be balanced: a group with more than ``PARALLEL_MAX_SHARE`` of the cost would
    gain little from the split and lose the frame threads of a single decoder.
    """
    if parts < 2 or len(runs) < 2:
        return [runs]
    costs = np.array([run.wanted[-1] - run.seek_index + 1 + SEEK_COST for run in runs])
    ends = np.cumsum(costs)
    shares = ends[-1] * np.arange(1, parts) / parts
    cuts = [int(np.argmin(np.abs(ends - share))) + 1 for share in shares]  # after the run ending nearest each
    bounds = sorted({0, len(runs), *cuts})
    spans = list(pairwise(bounds))
    groups = [runs[a:b] for a, b in spans]
    largest = max(int(costs[a:b].sum()) for a, b in spans)
    return groups if len(groups) > 1 and largest <= PARALLEL_MAX_SHARE * ends[-1] else [runs]
