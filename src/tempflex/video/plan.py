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
from typing import Literal

import numpy as np

Strategy = Literal["auto", "sequential", "seek"]
STRATEGIES = ("auto", "sequential", "seek")
SEEK_COST = 6  # frames; about the decode-pipeline refill after a flush with 2-4 frame threads


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


def plan_cost(runs: list[Run]) -> int:
    """Frames the plan decodes, by the model above (seeks not counted)."""
    return sum(run.wanted[-1] - run.seek_index + 1 for run in runs)
