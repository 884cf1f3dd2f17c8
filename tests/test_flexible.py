"""FluxViT flexible sampling: determinism, strides, the token cap, coverage, config validation, per-frame grids."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from tempflex.video.flexible import FlexiblePlan, FlexibleSampling, plan_grid, sample_plan
from tempflex.vision.resize import native_grid

# FluxViT's ranges moved onto our 32-px lattice: F 4..24 stride 2, R 160..256 stride 32 (25..64 tokens a frame)
LOOSE = {"min_frames": 4, "max_frames": 24, "frame_stride": 2, "min_resolution": 160, "max_resolution": 256,
         "resolution_stride": 32, "max_tokens": 24 * 64}
TIGHT = dict(LOOSE, max_tokens=640)  # 24 frames only fit at 160 px (600 tokens); 256 px only up to 10 frames


def _draws(cfg: FlexibleSampling, n: int, seed: int = 0) -> list[FlexiblePlan]:
    rng = np.random.default_rng(seed)
    return [sample_plan(cfg, rng) for _ in range(n)]


def test_golden_draws_from_fixed_seeds():
    cfg = FlexibleSampling(**TIGHT)
    golden = [(16, 192), (12, 192), (10, 192), (6, 256), (8, 160)]
    assert [(p.num_frames, p.resolution) for p in _draws(cfg, 5)] == golden
    assert sample_plan(cfg, 0) == FlexiblePlan(16, 192, 36, 576, patch_size=16, merge_size=2)


def test_deterministic_per_seed_and_source():
    cfg = FlexibleSampling(**TIGHT)
    assert _draws(cfg, 50, seed=3) == _draws(cfg, 50, seed=3)
    assert all(sample_plan(cfg, 11) == sample_plan(cfg, 11) for _ in range(5))
    a, b = random.Random(5), random.Random(5)
    assert [sample_plan(cfg, a) for _ in range(20)] == [sample_plan(cfg, b) for _ in range(20)]


def test_different_seeds_differ():
    cfg = FlexibleSampling(**LOOSE)
    assert _draws(cfg, 20, seed=0) != _draws(cfg, 20, seed=1)
    assert len({sample_plan(cfg, s) for s in range(20)}) > 5


@pytest.mark.parametrize("ranges", [LOOSE, TIGHT], ids=["loose", "tight"])
def test_bounds_strides_and_cap_over_many_draws(ranges):
    cfg = FlexibleSampling(**ranges)
    for p in _draws(cfg, 2000):
        assert 4 <= p.num_frames <= 24 and (p.num_frames - 4) % 2 == 0
        assert 160 <= p.resolution <= 256 and (p.resolution - 160) % 32 == 0
        assert p.tokens_per_frame == (p.resolution // 32) ** 2
        assert p.total_tokens == p.num_frames * p.tokens_per_frame <= cfg.max_tokens


@pytest.mark.parametrize("ranges", [LOOSE, TIGHT], ids=["loose", "tight"])
def test_draws_cover_every_frame_count_and_resolution(ranges):
    cfg = FlexibleSampling(**ranges)
    draws = _draws(cfg, 2000)
    assert set(Counter(p.num_frames for p in draws)) == set(range(4, 25, 2))
    assert set(Counter(p.resolution for p in draws)) == {160, 192, 224, 256}
    assert set(Counter((p.num_frames, p.resolution) for p in draws)) == set(cfg.feasible)


def test_uniform_over_pairs_under_the_cap():
    """Equal to rejection sampling: each feasible (F, R) pair is equally likely."""
    cfg = FlexibleSampling(**TIGHT)
    counts = Counter((p.num_frames, p.resolution) for p in _draws(cfg, 20_000))
    expected = 20_000 / len(cfg.feasible)
    assert all(abs(c - expected) < 5 * expected**0.5 for c in counts.values())  # 5 sigma
    assert max(f * cfg.tokens_per_frame(r) for f, r in cfg.feasible) <= 640
    assert (24, 160) in cfg.feasible and (24, 192) not in cfg.feasible and (10, 256) in cfg.feasible


def test_single_point_ranges():
    cfg = FlexibleSampling(8, 8, 1, 64, 64, 32, 32)  # 8 frames x 4 tokens
    assert sample_plan(cfg, 0) == FlexiblePlan(8, 64, 4, 32)


@pytest.mark.parametrize("field, change", [
    ("min_frames", {"min_frames": 0}),
    ("max_frames", {"max_frames": 2}),
    ("frame_stride", {"frame_stride": 3}),  # 24 - 4 = 20 is not a multiple of 3
    ("frame_stride", {"frame_stride": 0}),
    ("min_resolution", {"min_resolution": 168}),  # FluxViT's 168 is not on the 32-px lattice
    ("max_resolution", {"max_resolution": 252}),
    ("resolution_stride", {"resolution_stride": 16}),
    ("resolution_stride", {"resolution_stride": 64}),  # 256 - 160 = 96 is not a multiple of 64
    ("max_resolution", {"max_resolution": 128}),  # below min_resolution
    ("max_tokens", {"max_tokens": 99}),  # 4 frames x 25 tokens = 100 is the cheapest plan
    ("max_tokens", {"max_tokens": 0}),
    ("patch_size", {"patch_size": 0}),
    ("min_frames", {"min_frames": 4.0}),
])
def test_bad_configs_name_the_field(field, change):
    with pytest.raises(ValueError, match=field):
        FlexibleSampling(**{**LOOSE, **change})


def test_other_patch_sizes_change_the_lattice():
    cfg = FlexibleSampling(4, 8, 4, 56, 112, 28, 10_000, patch_size=14, merge_size=2)
    assert cfg.unit == 28 and cfg.resolutions == (56, 84, 112)
    plan = sample_plan(cfg, 1)
    assert plan.tokens_per_frame == (plan.resolution // 28) ** 2
    assert plan_grid(plan, 300, 300).unit == 28


def test_bad_random_source():
    cfg = FlexibleSampling(**LOOSE)
    with pytest.raises(TypeError, match="seed"):
        sample_plan(cfg, None)  # no silent global or entropy-seeded RNG
    with pytest.raises(TypeError):
        sample_plan(cfg, 1.5)


@pytest.mark.parametrize("height, width", [(720, 1280), (1280, 720), (512, 512), (240, 320), (360, 640)])
@pytest.mark.parametrize("resolution", [160, 224, 256])
def test_plan_grid_keeps_aspect_under_the_square_budget(height, width, resolution):
    per_frame = (resolution // 32) ** 2
    plan = FlexiblePlan(8, resolution, per_frame, 8 * per_frame)
    grid = plan_grid(plan, height, width)
    assert grid == native_grid(height, width, patch_size=16, merge_size=2, min_tokens=1, max_tokens=per_frame)
    assert 1 <= grid.tokens <= per_frame and grid.unit == 32
    assert (grid.cols >= grid.rows) == (width >= height)


def test_plan_grid_golden_values():
    plan = FlexiblePlan(8, 256, 64, 512)
    assert (plan_grid(plan, 720, 1280).rows, plan_grid(plan, 720, 1280).cols) == (6, 10)  # 60 tokens, 16:9-ish
    assert (plan_grid(plan, 512, 512).rows, plan_grid(plan, 512, 512).cols) == (8, 8)
    assert plan_grid(plan, 64, 96).tokens == 6  # smaller than the budget: native size, not upscaled

