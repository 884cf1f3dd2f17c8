"""Numpy drawing for the probe videos: filled shapes over a plain dark or a textured background.

Shapes: T frames, H x W pixels; a frame is (H, W, 3) uint8, a clip (T, H, W, 3). Positions are (x, y) pixel
centres as floats (x to the right, y down; a shape covers the pixels whose centres fall inside it, which rounds
sub-pixel positions); a shape's ``size`` is the side of its bounding box in px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Saturated and far apart (>= 80 in RGB) so that each survives H.264 / yuv420p and is told apart by nearest colour.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (40, 200, 40),
    "blue": (40, 70, 235),
    "yellow": (235, 225, 30),
    "magenta": (225, 40, 225),
    "cyan": (30, 215, 225),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
BACKGROUND = (18, 18, 22)  # the plain dark background
Colour = str | tuple[int, int, int]


def rgb(colour: Colour) -> tuple[int, int, int]:
    """A colour name of ``COLOURS`` or an RGB triple, as an RGB triple."""
    return COLOURS[colour] if isinstance(colour, str) else colour


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Which pixels, at offsets (dx, dy) from the centre, a shape of half-side ``r`` covers."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(ax, ay) <= 0.85 * r  # a little smaller: about the area of the circle
    if shape == "diamond":
        return ax + ay <= r
    if shape == "cross":
        arm = r / 3
        return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))
    if shape == "triangle":  # apex up, base at the bottom
        return (dy <= r) & (ax <= (dy + r) / 2)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def draw_shape(canvas: np.ndarray, shape: str, colour: Colour, x: float, y: float, size: float) -> None:
    """Fill ``shape`` of side ``size`` centred at (x, y) on ``canvas`` (H, W, 3), in place; clipped at the edges."""
    height, width = canvas.shape[:2]
    r = size / 2
    x0, x1 = max(0, int(np.floor(x - r))), min(width, int(np.ceil(x + r)) + 1)
    y0, y1 = max(0, int(np.floor(y - r))), min(height, int(np.ceil(y + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    dy, dx = np.ogrid[y0:y1, x0:x1]
    mask = shape_mask(shape, dx - x, dy - y, r)  # (h, w) of the bounding box
    canvas[y0:y1, x0:x1][mask] = rgb(colour)


def draw_border(canvas: np.ndarray, colour: Colour, width: int) -> None:
    """Paint a frame of ``width`` px around the edge of ``canvas``, in place."""
    value = rgb(colour)
    canvas[:width], canvas[-width:] = value, value
    canvas[:, :width], canvas[:, -width:] = value, value


def plain_clip(frames: int, size: int) -> np.ndarray:
    """(T, S, S, 3) of the plain dark background."""
    clip = np.empty((frames, size, size, 3), dtype=np.uint8)
    clip[:] = BACKGROUND
    return clip


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3): smooth colour noise under sharp-edged blobs, in muted colours (channels 30..170) so that it
    shows motion well and the saturated object colours stand out on it."""
    coarse = rng.integers(30, 140, size=(max(2, height // 12), max(2, width // 12), 3), dtype=np.uint8)
    canvas = np.array(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))
    side = min(height, width)
    for _ in range(max(8, height * width // 150)):
        colour = tuple(int(v) for v in rng.integers(40, 171, size=3))
        shape = ("circle", "square", "diamond")[int(rng.integers(3))]
        draw_shape(canvas, shape, colour, rng.uniform(0, width), rng.uniform(0, height),
                   rng.uniform(side / 40, side / 12))
    return canvas


@dataclass
class Track:
    """One shape over a clip of T frames: per-frame position, size and colour (None where it is hidden)."""

    shape: str
    x: np.ndarray  # (T,) px
    y: np.ndarray  # (T,) px
    size: np.ndarray  # (T,) px
    colour: list[str | None]  # (T,) colour names

    @classmethod
    def moving(cls, shape: str, colour: str, start: tuple[float, float], end: tuple[float, float], size: float,
               frames: int, progress: np.ndarray | None = None) -> Track:
        """From ``start`` to ``end`` along a straight line; ``progress`` (T,) in [0, 1] (default: uniform)."""
        u = np.linspace(0.0, 1.0, frames) if progress is None else progress
        x = start[0] + (end[0] - start[0]) * u
        y = start[1] + (end[1] - start[1]) * u
        return cls(shape, x, y, np.full(frames, float(size)), [colour] * frames)

    @classmethod
    def still(cls, shape: str, colour: str, at: tuple[float, float], size: float, frames: int) -> Track:
        return cls.moving(shape, colour, at, at, size, frames)

    def shown(self, visible: np.ndarray) -> Track:
        """The same track, hidden where ``visible`` (T,) bool is False."""
        colour = [c if v else None for c, v in zip(self.colour, visible)]
        return Track(self.shape, self.x, self.y, self.size, colour)


def draw_tracks(clip: np.ndarray, tracks: list[Track]) -> np.ndarray:
    """Draw ``tracks`` in order (later ones on top) onto ``clip`` (T, H, W, 3), in place; returns ``clip``."""
    for t, frame in enumerate(clip):
        for track in tracks:
            if track.colour[t] is not None:
                draw_shape(frame, track.shape, track.colour[t], track.x[t], track.y[t], track.size[t])
    return clip
