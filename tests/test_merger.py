"""PatchMerger: the 2x2 window contract of DESIGN.md and the MLP's shapes."""

import pytest
import torch

from tempflex.merger import PatchMerger


def test_unshuffle_takes_true_2x2_windows():
    h, w, d = 4, 6, 3
    # patch (r, c) of frame n carries the value 1000 n + 10 r + c in every channel
    r, c = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = (10 * r + c).reshape(h * w, 1).float().expand(h * w, d)  # (h*w, D) row-major
    x = torch.stack([frame, frame + 1000])  # (N=2, h*w, D)
    out = PatchMerger(d, 8).unshuffle(x, (h, w))  # (2, h/2*w/2, 4D)
    assert out.shape == (2, (h // 2) * (w // 2), 4 * d)
    for n in range(2):
        for i in range(h // 2):
            for j in range(w // 2):
                token = out[n, i * (w // 2) + j].reshape(4, d)[:, 0]
                want = [10 * (2 * i) + 2 * j, 10 * (2 * i) + 2 * j + 1, 10 * (2 * i + 1) + 2 * j,
                        10 * (2 * i + 1) + 2 * j + 1]
                assert token.tolist() == [v + 1000 * n for v in want]


def test_unshuffle_is_not_the_authors_1x4_window():
    x = torch.arange(16.0).reshape(1, 16, 1)  # a 4x4 grid, one channel
    out = PatchMerger(1, 2).unshuffle(x, (4, 4))
    assert out[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # not [0, 1, 2, 3]


def test_forward_shape_and_grad():
    m = PatchMerger(16, 24, hidden_dim=40)
    x = torch.randn(3, 8 * 4, 16, requires_grad=True)
    y = m(x, (8, 4))
    assert y.shape == (3, 8, 24)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("grid", [(3, 4), (4, 5)])
def test_odd_grid_is_a_clear_error(grid):
    h, w = grid
    with pytest.raises(ValueError, match="not divisible"):
        PatchMerger(8, 8).unshuffle(torch.randn(1, h * w, 8), grid)


def test_patch_count_must_match_grid():
    with pytest.raises(ValueError, match="grid is 4x4"):
        PatchMerger(8, 8).unshuffle(torch.randn(1, 15, 8), (4, 4))
