"""The related methods as budget plug-ins (tome, holitom, kffocus, scenetilling, date, f2c, bvllm): exact budgets
over random inputs, and each algorithm's steps on hand-made tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tempflex.budget import QueryAwareReducer, VisualTokens, build
from tempflex.budget.holitom import pair_similarity, segmentation
from tempflex.budget.keyframes import KeyframeFocus
from tempflex.budget.merging import capped_shares
from tempflex.budget.queryframes import tass

RELATED = ("tome", "holitom", "kffocus", "scenetilling", "date", "f2c", "bvllm")
QUERY_AWARE = ("date", "f2c", "bvllm")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one intra-op thread


def from_rows(rows: list[list[list[float]]]) -> VisualTokens:
    """rows[t][i]: token i (raster order on a 1 x n grid) of frame t, frame t at t seconds."""
    x = torch.tensor(rows, dtype=torch.float32)  # (T, n, E)
    t, n, e = x.shape
    return VisualTokens.from_features(x.reshape(-1, e), [t, 2, 2 * n], 2, [float(i) for i in range(t)])


def keys(out: VisualTokens) -> list[int]:
    return out.keys.tolist()


@pytest.mark.parametrize("name", RELATED)
def test_exact_budget_at_recorded_positions(name):
    reducer = build("reducer", name)
    assert getattr(reducer, "merges", False)
    assert isinstance(reducer, QueryAwareReducer) == (name in QUERY_AWARE)
    rng = np.random.default_rng(0)
    for seed in range(40):
        frames, h, w = (int(v) for v in rng.integers(1, [9, 4, 5]))
        x = torch.from_numpy(rng.normal(size=(frames * h * w, 6))).float()
        tokens = VisualTokens.from_features(x, [frames, 2 * h, 2 * w], 2, [float(t) for t in range(frames)])
        if seed % 3 == 0:
            tokens = tokens.select(torch.from_numpy(rng.random(len(tokens)) < 0.6))
        scores = torch.from_numpy(rng.normal(size=frames)).float() if name in QUERY_AWARE else None
        for budget in (0, 1, 2, 5, len(tokens) // 2, len(tokens), len(tokens) + 3):
            out = reducer.reduce(tokens, budget, scores=scores)
            assert len(out) == min(budget, len(tokens))
            index = tokens.frame_index()[tuple(out.positions.T)]
            assert bool((index >= 0).all()) and torch.equal(out.timestamps, tokens.timestamps[index])
            assert bool(torch.isfinite(out.tokens).all())
        assert torch.equal(reducer.reduce(tokens, len(tokens), scores=scores).tokens, tokens.tokens)


# ------------------------------------------------------------------------------------------------------- tome
TOME_FRAME = [[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [3.0, 0.0]]  # A = tokens 0, 2; B = tokens 1, 3


def test_tome_bipartite_matching_by_hand():
    tome = build("reducer", "tome")
    # token 0 matches 3 (cos 1), token 2 matches 1 (cos 1): both merge, size-weighted means at the B places
    out = tome.reduce(from_rows([TOME_FRAME]), 2)
    assert keys(out) == [1, 3] and out.tokens.tolist() == [[0.0, 1.5], [2.0, 0.0]]
    out = tome.reduce(from_rows([TOME_FRAME]), 3)  # equal edges: the earlier A token merges
    assert keys(out) == [1, 2, 3] and out.tokens.tolist() == [[0.0, 1.0], [0.0, 2.0], [2.0, 0.0]]
    out = tome.reduce(from_rows([TOME_FRAME]), 1)  # a second round; sizes 2 and 2 -> the mean of all four
    assert keys(out) == [3] and torch.allclose(out.tokens, torch.tensor([[1.0, 0.75]]))
    two = tome.reduce(from_rows([TOME_FRAME, TOME_FRAME]), 3)  # inside each frame only: counts spread 1 + 2
    assert two.tokens_per_frame().tolist() == [1, 2]


# ---------------------------------------------------------------------------------------------------- holitom
# place 0 repeats through all 4 frames; place 1 repeats over frames 0-1 and 2-3 but changes at frame 2
HOLI = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.1], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.1], [1.0, 1.0]]]


def test_holitom_segments_globally_then_merges():
    tokens = from_rows(HOLI)
    sim = pair_similarity(tokens)
    assert sim[0].isinf().all() and sim[2, 1] == pytest.approx(2 ** -0.5)
    # one segment saves 3 x 1 place; two segments [0, 2), [2, 4) save 1 x 2 + 1 x 2 = 4: the DP takes the latter
    assert segmentation(sim, 0.8, 16) == [range(2), range(2, 4)]
    assert segmentation(sim, 0.8, 1) == [range(t, t + 1) for t in range(4)]
    holitom = build("reducer", "holitom", tau=0.8)
    out = holitom.reduce(tokens, 4)  # all four redundant columns merge into their segment's first frame
    assert keys(out) == [0, 1, 4, 5]
    assert torch.allclose(out.tokens[0], torch.tensor([1.0, 0.05]))  # frames 0 and 1 at place 0, averaged
    # 7 tokens: only the strongest column (place 1 of frames 0-1, cos 1) merges
    assert keys(holitom.reduce(tokens, 7)) == [0, 1, 2, 4, 5, 6, 7]
    out = holitom.reduce(tokens, 3)  # then spatial merging: frame 2 (two tokens) merges down to one
    assert keys(out) == [0, 1, 5] and torch.allclose(out.tokens[2], torch.tensor([1.0, 0.525]))


# ---------------------------------------------------------------------------------------------------- kffocus
KF = [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]]]


def test_kffocus_keyframes_and_condensation_ratios():
    kf = KeyframeFocus(clip_frames=2)
    weights, keyframes = kf.weights(from_rows(KF))
    assert keyframes == [0, 2] and weights.tolist() == [2.0, 0.25, 2.0, 0.25]  # frames 1, 3 repeat: the floor
    assert keys(kf.reduce(from_rows(KF), 4)) == [0, 1, 4, 5]  # the keyframes whole, the repeats condensed away
    out = kf.reduce(from_rows(KF), 6)  # keyframes capped at 2; the rest one each, merged (token 2 into 3)
    assert keys(out) == [0, 1, 3, 4, 5, 7] and out.tokens[2].tolist() == [0.5, 0.5]
    assert capped_shares([2.0, 0.25, 2.0, 0.25], [2, 2, 2, 2], 6) == [2, 1, 2, 1]


# ----------------------------------------------------------------------------------------------- scenetilling
def test_scenetilling_cuts_at_the_depth_peak_and_shares_per_scene():
    a, b = [[1.0, 0.0, 0.0], [1.0, 0.2, 0.0]], [[0.0, 0.0, 1.0], [0.0, 0.2, 1.0]]
    tokens = from_rows([a, a, a, b, b, b, b, b])  # two scenes: 3 frames and 5 frames
    tiller = build("reducer", "scenetilling")
    assert tiller.scenes(tokens) == [range(6), range(6, 16)]
    out = tiller.reduce(tokens, 2)  # one token per scene, each the mean of its whole scene
    assert out.tokens_per_frame()[:3].sum() == 1 and out.tokens_per_frame()[3:].sum() == 1
    assert torch.allclose(out.tokens, torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.1, 1.0]]))
    assert len(build("reducer", "scenetilling").scenes(from_rows([a] * 5))) == 1  # no dip, no cut


# ------------------------------------------------------------------------------------------------------- date
def test_date_tass_keeps_relevant_frames_apart():
    scores = torch.tensor([0.0, 5.0, 4.9, 0.0, 0.0, 0.0, 3.0, 0.0])
    assert tass(scores, list(range(8)), 2) == [1, 6]  # frame 2 is second best but within the gap of 4
    assert tass(scores, list(range(8)), 8) == list(range(8))
    rows = [[[float(t), 1.0], [1.0, float(t)]] for t in range(8)]
    out = build("reducer", "date").reduce(from_rows(rows), 4, scores=scores)
    assert keys(out) == [2, 3, 12, 13]  # frames 1 and 6 whole (a frame's own 2 tokens each)
    assert keys(build("reducer", "date").reduce(from_rows(rows), 4)) == [0, 1, 8, 9]  # no query: evenly apart


# -------------------------------------------------------------------------------------------------------- f2c
def test_f2c_key_clip_trades_resolution_for_length():
    rows = [[[float(t + 1), float(i)] for i in range(4)] for t in range(8)]  # 8 frames of 4 tokens
    scores = torch.zeros(8)
    scores[5] = 1.0
    f2c = build("reducer", "f2c", clips=1, max_clip_frames=4, min_frame_tokens=2)
    out = f2c.reduce(from_rows(rows), 8, scores=scores)  # a 4-frame clip around frame 5 at half resolution
    assert keys(out) == [17, 19, 21, 23, 25, 27, 29, 31]
    assert out.tokens[0].tolist() == [5.0, 1.0]  # frame 4, places 0, 1, 2 pooled into place 1
    sharp = build("reducer", "f2c", clips=1, max_clip_frames=4, min_frame_tokens=4).reduce(from_rows(rows), 8,
                                                                                           scores=scores)
    assert keys(sharp) == list(range(16, 24))  # a higher floor: a 2-frame clip at full resolution
    assert len(f2c.reduce(from_rows(rows), 32, scores=scores)) == 32  # more clips when one cannot hold K


# ------------------------------------------------------------------------------------------------------ bvllm
def test_bvllm_selects_merges_duplicates_and_samples():
    rows = [[[float(t), 1.0], [1.0, -float(t)]] for t in range(6)]
    rows[1], rows[2] = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.2], [0.2, 1.0]]  # frame 2 repeats frame 1
    scores = torch.tensor([0.0, 5.0, 4.0, 0.0, 3.0, 0.0])
    bvllm = build("reducer", "bvllm", frame_tokens=2)
    out = bvllm.reduce(from_rows(rows), 4, scores=scores)
    # top-2 frames 1, 2; 2 merges into 1, so the next best (4) joins; 2 tokens each
    assert keys(out) == [2, 3, 8, 9]
    assert torch.allclose(out.tokens[:2], torch.tensor([[1.0, 0.1], [0.1, 1.0]]))
    assert keys(build("reducer", "bvllm", frame_tokens=2, merge_threshold=1.0).reduce(
        from_rows(rows), 4, scores=scores)) == [2, 3, 4, 5]  # no merging: the top-2 frames
    static = [[[1.0, 0.0], [0.0, 1.0]]] * 5 + [[[1.0, 0.1], [0.0, 1.0]]]  # every frame repeats the first
    assert len(bvllm.reduce(from_rows(static), 6, scores=scores)) == 6  # the weakest merges undone: still exact
    dropped = build("reducer", "bvllm", frame_tokens=1, spatial_merge=False).reduce(from_rows(rows), 1, scores=scores)
    assert keys(dropped) == [3] and dropped.tokens.tolist() == [[0.0, 1.0]]  # sampled, the rest dropped
