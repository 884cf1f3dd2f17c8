"""Token Optimization (FluxViT, Sec. 3.2 and App. A.1): at a fixed visual-token count, the best split between frame
count and per-frame resolution, scored on a validation split (docs/budget.md, "Token Optimization").

A configuration is (frames F, merged tokens per frame P); it costs F * P visual tokens and must fit the budget.
``token_optimization`` runs the paper's linear heuristic, ``grid_search`` tries every fitting configuration;
``tempflex.probes.evaluate.probe_scorer`` turns a model and a probe set into the ``score(frames, tokens_per_frame) ->
accuracy`` both take.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from tempflex.budget.base import BudgetError

Score = Callable[[int, int], float]  # (frames, tokens_per_frame) -> higher is better, e.g. validation accuracy


@dataclass(frozen=True)
class Trial:
    """One evaluated configuration."""

    frames: int  # F
    tokens_per_frame: int  # P, merged tokens per frame (the processor's video_max_tokens_per_frame)
    tokens: int  # F * P, at most the budget
    score: float
    phase: str  # "frames" (phase 1), "trade" (phase 2) or "grid"


@dataclass
class SearchResult:
    """Every trial in the order it was evaluated, and the best one (highest score; ties: fewer tokens, earlier)."""

    budget: int
    method: str  # "heuristic" or "grid"
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        return max(self.trials, key=lambda t: (t.score, -t.tokens))

    @property
    def evaluations(self) -> int:
        return len(self.trials)

    def to_json(self) -> dict:
        return {"budget": self.budget, "method": self.method, "best": asdict(self.best),
                "trials": [asdict(t) for t in self.trials]}


class _Scorer:
    """Calls ``score`` at most once per configuration and records each first call as a trial."""

    def __init__(self, score: Score, result: SearchResult) -> None:
        self.score, self.result = score, result
        self.seen: dict[tuple[int, int], Trial] = {}

    def __call__(self, frames: int, per_frame: int, phase: str) -> float:
        key = (frames, per_frame)
        if key not in self.seen:
            value = float(self.score(frames, per_frame))
            if math.isnan(value):
                raise ValueError(f"score({frames}, {per_frame}) is NaN")
            self.seen[key] = Trial(frames, per_frame, frames * per_frame, value, phase)
            self.result.trials.append(self.seen[key])
        return self.seen[key].score


def _options(name: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values:
        raise BudgetError(f"{name} is empty: give at least one value")
    if any(isinstance(v, bool) or int(v) != v or v < 1 for v in values):
        raise BudgetError(f"{name} must be positive integers, got {values}")
    return sorted({int(v) for v in values})


def check_space(budget: int, frames_options: Sequence[int], per_frame_options: Sequence[int]) -> tuple[list[int], list[int]]:
    """The sorted, distinct options; a ``BudgetError`` for an empty or non-positive option or a budget too small."""
    frames, per_frame = _options("frames_options", frames_options), _options("tokens_per_frame_options",
                                                                             per_frame_options)
    if isinstance(budget, bool) or int(budget) != budget or budget < 1:
        raise BudgetError(f"the budget must be a positive integer, got {budget}")
    if frames[0] * per_frame[0] > budget:
        raise BudgetError(f"budget {budget} is below the smallest configuration, {frames[0]} frames x "
                          f"{per_frame[0]} tokens per frame = {frames[0] * per_frame[0]} tokens")
    return frames, per_frame


def _largest(options: list[int], limit: int) -> int | None:
    """The largest option <= limit, or None."""
    fitting = [v for v in options if v <= limit]
    return fitting[-1] if fitting else None


def token_optimization(score: Score, budget: int, frames_options: Sequence[int], tokens_per_frame_options: Sequence[int],
                       *, patience: int = 1, min_gain: float = 0.0) -> SearchResult:
    """FluxViT's linear-complexity Token Optimization heuristic (App. A.1) at ``budget`` visual tokens.

    Phase 1 ("frames"): from the fewest frames, raise the frame count, each at the most tokens per frame that fit
    the budget, until ``patience`` steps in a row gain no more than ``min_gain`` over the best score. Phase 2
    ("trade"): from the best configuration, lower the tokens per frame one option at a time and take the most
    frames that then fit, again until ``patience`` steps gain nothing. Every configuration is scored at most once.
    """
    frames, per_frame = check_space(budget, frames_options, tokens_per_frame_options)
    if patience < 1 or min_gain < 0:
        raise BudgetError(f"patience must be >= 1 and min_gain >= 0, got {patience} and {min_gain}")
    result = SearchResult(budget, "heuristic")
    scorer = _Scorer(score, result)

    best, stale = -math.inf, 0
    for f in frames:  # phase 1
        p = _largest(per_frame, budget // f)
        if p is None:  # more frames than the budget allows at the smallest resolution
            break
        value = scorer(f, p, "frames")
        stale = 0 if value > best + min_gain else stale + 1
        best = max(best, value)
        if stale >= patience:
            break

    start = result.best
    stale, at_frames = 0, start.frames
    for p in reversed([v for v in per_frame if v < start.tokens_per_frame]):  # phase 2
        f = _largest(frames, budget // p)
        if f is None or f <= at_frames:  # lowering the resolution buys no extra frame: not a trade
            continue
        at_frames = f
        value = scorer(f, p, "trade")
        stale = 0 if value > best + min_gain else stale + 1
        best = max(best, value)
        if stale >= patience:
            break
    return result


def grid_search(score: Score, budget: int, frames_options: Sequence[int],
                tokens_per_frame_options: Sequence[int]) -> SearchResult:
    """Every (frames, tokens per frame) whose product fits the budget, frames-major: the heuristic's reference."""
    frames, per_frame = check_space(budget, frames_options, tokens_per_frame_options)
    result = SearchResult(budget, "grid")
    scorer = _Scorer(score, result)
    for f in frames:
        for p in per_frame:
            if f * p <= budget:
                scorer(f, p, "grid")
    return result
