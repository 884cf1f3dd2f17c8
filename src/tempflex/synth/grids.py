"""Frame grids for the data pipeline: 1-fps frames stitched 3x3 in reading order (TempFlex appendix, figure 6).

TempFlex-2M's captions and QA pairs were written by GPT-4o from "stitched images, each containing 9 frames ...
extracted from the original video at a frame rate of 1 fps and arranged from left to right and top to bottom in
tic-tac-toe style (3x3)"; "the 9 frames in the first stitched image represent frames from 0 to 8 seconds, the 9
frames in the second ... from 9 to 17 seconds"; "any white images within the stitched images are meaningless".

So: frame k of grid g sits at row (k // cols), column (k % cols); the last grid is filled with white tiles; a grid
covers ``[start, end]`` = the timestamps of its first and last real frame (0 s to 8 s above, not 0 s to 9 s).

Shapes: T frames, H x W pixels; a grid is (rows * tile height) x (cols * tile width) pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class FrameGrid:
    """One stitched image and the span of video it shows."""

    image: Image.Image  # RGB, rows x cols tiles
    start: float  # seconds, timestamp of the first frame in the grid
    end: float  # seconds, timestamp of the last real (non-padding) frame in the grid
    frame_indices: tuple[int, ...]  # indices into the input frames, in reading order; len <= rows * cols

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


def frame_grids(
    frames: np.ndarray | torch.Tensor,
    timestamps: Sequence[float] | np.ndarray | torch.Tensor,
    *,
    rows: int = 3,
    cols: int = 3,
    tile_width: int | None = None,
    pad_color: tuple[int, int, int] = WHITE,
) -> list[FrameGrid]:
    """Stitch (T, H, W, 3) uint8 frames (numpy or torch) into ceil(T / (rows * cols)) grids in reading order.

    ``timestamps``: T seconds, non-decreasing. ``tile_width``: resize every tile to this width (height by the
    frame's aspect ratio, bicubic); None keeps the frames' size. Padding tiles have ``pad_color``.
    """
    pixels = _as_frames(frames)  # (T, H, W, 3)
    times = _as_timestamps(timestamps, len(pixels))
    _check_layout(rows, cols, tile_width, pad_color)
    tiles = _resize_tiles(pixels, tile_width)  # (T, h, w, 3)
    per_grid = rows * cols
    grids = []
    for first in range(0, len(tiles), per_grid):
        indices = tuple(range(first, min(first + per_grid, len(tiles))))
        image = _stitch(tiles[first : first + per_grid], rows, cols, pad_color)
        grids.append(FrameGrid(image, float(times[indices[0]]), float(times[indices[-1]]), indices))
    return grids


def video_frame_grids(
    path: str | os.PathLike,
    *,
    fps: float = 1.0,
    rows: int = 3,
    cols: int = 3,
    max_frames: int | None = None,
    tile_width: int | None = None,
) -> list[FrameGrid]:
    """Decode ``path`` at ``fps`` (1 fps, as in the paper) with ``tempflex.video.load_video`` and stitch grids.

    Decoding errors surface as ``tempflex.video.VideoDecodeError``.
    """
    from tempflex.video import load_video  # lazily: decoding (PyAV) is only needed here

    _check_layout(rows, cols, tile_width, WHITE)
    video = load_video(path, fps=fps, max_frames=max_frames)
    return frame_grids(video.frames, video.timestamps, rows=rows, cols=cols, tile_width=tile_width)


def _as_frames(frames: object) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch tensor; no torch import needed for numpy callers
        frames = frames.detach().cpu().numpy()
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames must be shaped (T, H, W, 3), got {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    if array.shape[0] == 0:
        raise ValueError("no frames: cannot build a frame grid from an empty video")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"frames have zero size: {array.shape}")
    return array


def _as_timestamps(timestamps: object, num_frames: int) -> np.ndarray:
    if hasattr(timestamps, "detach"):
        timestamps = timestamps.detach().cpu().numpy()
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if len(times) != num_frames:
        raise ValueError(f"{num_frames} frames but {len(times)} timestamps")
    if not np.all(np.isfinite(times)):
        raise ValueError("timestamps must be finite")
    if np.any(np.diff(times) < 0):
        raise ValueError("timestamps must be non-decreasing: frames are stitched in time order")
    return times


def _check_layout(rows: int, cols: int, tile_width: int | None, pad_color: tuple[int, int, int]) -> None:
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be >= 1, got rows={rows}, cols={cols}")
    if tile_width is not None and tile_width < 1:
        raise ValueError(f"tile_width must be >= 1 or None, got {tile_width}")
    if len(pad_color) != 3 or not all(0 <= int(c) <= 255 for c in pad_color):
        raise ValueError(f"pad_color must be three values in [0, 255], got {pad_color}")


def _resize_tiles(frames: np.ndarray, tile_width: int | None) -> np.ndarray:
    """(T, H, W, 3) -> (T, h, w, 3): every tile tile_width wide, the height keeping the aspect ratio."""
    height, width = frames.shape[1:3]
    if tile_width is None or tile_width == width:
        return frames
    tile_height = max(1, round(height * tile_width / width))
    resample = Image.Resampling.BICUBIC
    return np.stack([np.asarray(Image.fromarray(f).resize((tile_width, tile_height), resample)) for f in frames])


def _stitch(tiles: np.ndarray, rows: int, cols: int, pad_color: tuple[int, int, int]) -> Image.Image:
    """Up to rows*cols tiles (n, h, w, 3) -> one RGB image; tile k at row k // cols, column k % cols."""
    n, h, w, _ = tiles.shape
    canvas = np.empty((rows * h, cols * w, 3), dtype=np.uint8)
    canvas[:] = np.asarray(pad_color, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tiles[k]
    return Image.fromarray(canvas)
