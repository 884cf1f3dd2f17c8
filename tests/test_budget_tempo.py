"""Tempo's own ATA allocation (allocator ``tempo``) and its head keep (``ata`` with ``within="head"``): hand cases
and the allocator contract as Tempo has it (at most the budget, never more)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tempflex.budget import BudgetError, BudgetPipeline, VisualTokens, build


def make_tokens(frames: int, h: int, w: int, dim: int = 8, seed: int = 0) -> VisualTokens:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames * h * w, dim, generator=g)  # (T*h*w, E)
    return VisualTokens.from_features(x, [frames, 2 * h, 2 * w], 2, [0.5 * t for t in range(frames)])


@pytest.mark.parametrize(("scores", "budget", "expected"), [
    ([0.0, 0.5, 1.0], 100, [4, 10, 16]),  # 30 <= 100: linear onto [4, 16], the rest of the budget unspent
    ([0.0, 0.5, 1.0], 30, [4, 10, 16]),  # exactly the budget
    ([0.0, 0.5, 1.0], 24, [4, 8, 12]),  # 30 > 24: scaled by 0.8 -> [3.2, 8, 12.8], floored, 3 raised to 4
    ([0.0, 0.5, 1.0], 15, [4, 5, 6]),  # x0.5 -> [2, 5, 8] -> [4, 5, 8] = 17: 2 units back from the largest
    ([2.0, 2.0, 2.0], 100, [16, 16, 16]),  # equal scores: all weights 1
    ([-3.0, 7.0], 100, [4, 16]),  # min-max: only the order and the spacing matter
])
def test_tempo_hand_cases(scores, budget, expected):
    counts = build("allocator", "tempo").allocate(torch.tensor(scores), budget, 4, 16)
    assert counts.dtype == torch.long and counts.tolist() == expected


def test_tempo_spends_at_most_the_budget_in_range_and_monotone():
    tempo, waterfill = build("allocator", "tempo"), build("allocator", "waterfill")
    rng = np.random.default_rng(0)
    under = 0
    for _ in range(200):
        s = int(rng.integers(1, 12))
        lo = int(rng.integers(0, 4))
        hi = lo + int(rng.integers(0, 9))
        scores = torch.tensor(np.round(rng.normal(size=s) * 3, int(rng.integers(0, 3))))  # ties now and then
        budget = int(rng.integers(s * lo, s * hi + 6))
        counts = tempo.allocate(scores, budget, lo, hi)
        assert int(counts.sum()) <= budget
        assert int(counts.min()) >= lo and int(counts.max()) <= hi
        higher = scores[:, None] > scores[None, :]  # (S, S): i scores above j
        assert not bool((higher & (counts[:, None] < counts[None, :])).any())
        linear = lo + (scores - scores.min()) / (scores.max() - scores.min()) * (hi - lo) if s > 1 else None
        if linear is not None and float(linear.sum()) <= budget:  # no scaling: Tempo's linear map, floored
            assert counts.tolist() == linear.floor().long().tolist()
        under += int(counts.sum()) < int(waterfill.allocate(scores, budget, lo, hi).sum())
    assert under > 50  # it really does spend less than waterfill, which fills the budget
    with pytest.raises(BudgetError, match="below the minimum 12"):
        tempo.allocate(torch.zeros(3), 11, 4, 16)


def test_ata_with_tempo_and_head_keeps_the_first_tokens_of_each_segment():
    tokens = make_tokens(6, 2, 4, seed=1)  # 6 frames of 8 tokens; segments of 2 frames: 1..16 tokens each
    ata = build("reducer", "ata", segment_frames=2, allocator="tempo", within="head")
    out = ata.reduce(tokens, 100, scores=torch.tensor([0.0, 0.5, 1.0]))
    # bounds [ceil(0.5*2), floor(16*2)] = [1, 32] capped by the 16 tokens a segment holds -> linear [1, 8.5, 16]
    assert out.tokens_per_frame().reshape(3, 2).sum(dim=1).tolist() == [1, 8, 16]
    assert out.keys.tolist() == [0] + list(range(16, 24)) + list(range(32, 48))  # each segment's head
    assert torch.equal(out.tokens, tokens.tokens[out.keys])
    scaled = ata.reduce(tokens, 12, scores=torch.tensor([0.0, 0.5, 1.0]))  # 25.5 > 12: x12/25.5 -> [0.47, 4, 7.5]
    assert scaled.tokens_per_frame().reshape(3, 2).sum(dim=1).tolist() == [1, 4, 7]
    with pytest.raises(BudgetError, match="within must be"):
        build("reducer", "ata", within="tail")


def test_tempo_runs_from_a_spec():
    pipeline = BudgetPipeline.from_spec("ata:64,allocator=tempo,within=head,segment_frames=2")
    assert type(pipeline.reducer.allocator).__name__ == "TempoLinear" and pipeline.reducer.within == "head"
    out = pipeline.reducer.reduce(make_tokens(4, 2, 2), 64)  # no scores: equal, every segment at its maximum
    assert len(out) == 16
