"""Which frames to keep: target times over a window, then the nearest real frame to each target.

Pure numpy over the frame times of a ``Timeline`` (or of decord's timestamps), so both backends pick the same
frames. A frame's time is its presentation time; the window is the half-open interval [start, end) in seconds.

- ``num_frames=N``: N targets at the centres of N equal segments of the window, t_i = start + (i + 0.5) * span / N.
- ``fps=r``: targets 1/r apart at t_k = start + (k + 0.5) / r while t_k < end (at least one); if that is more
  than ``max_frames``, N = ``max_frames`` uniform targets instead (the paper: 64 frames in training, 128 at test).
- neither: every frame in the window; if there are more than ``max_frames``, N = ``max_frames`` uniform targets.
- ``num_frames`` above ``max_frames`` is capped to ``max_frames``.

Each target maps to the frame whose time is nearest (ties to the earlier frame) among the frames in the window;
the kept indices are unique and increasing, so a window with fewer frames than targets returns fewer frames
(never a repeated frame). With a constant frame rate and at least N frames in the window, exactly N are kept.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def validate_request(
    num_frames: int | None, fps: float | None, max_frames: int | None, start: float | None, end: float | None
) -> None:
    """Raise ``ValueError`` for arguments that no video could satisfy."""
    if num_frames is not None and fps is not None:
        raise ValueError("give num_frames or fps, not both")
    for name, value in (("num_frames", num_frames), ("max_frames", max_frames)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if fps is not None and not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end} s) must be after start ({start} s)")


def uniform_targets(start: float, end: float, count: int) -> np.ndarray:
    """(count,) target times at the centres of ``count`` equal segments of [start, end)."""
    return start + (np.arange(count) + 0.5) * ((end - start) / count)


def target_times(
    start: float,
    end: float,
    num_frames: int | None,
    fps: float | None,
    max_frames: int | None,
    available: int,
) -> np.ndarray | None:
    """Target times in seconds, or None for "every frame in the window" (``available`` of them)."""
    cap = max_frames if max_frames is not None else math.inf
    if num_frames is not None:
        return uniform_targets(start, end, int(min(num_frames, cap)))
    if fps is not None:
        count = max(1, math.ceil((end - start) * fps - 0.5 - 1e-9))  # k with (k + 0.5) / fps < end - start
        if count > cap:
            return uniform_targets(start, end, int(cap))
        return start + (np.arange(count) + 0.5) / fps
    if available > cap:
        return uniform_targets(start, end, int(cap))
    return None


def nearest_frames(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the index into sorted ``times`` of the nearest one (ties to the earlier)."""
    right = np.clip(np.searchsorted(times, targets, side="left"), 0, len(times) - 1)  # first time >= target
    left = np.clip(right - 1, 0, len(times) - 1)
    take_left = np.abs(targets - times[left]) <= np.abs(times[right] - targets)
    return np.where(take_left, left, right)


def distinct_nearest(times: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For sorted targets (K,), strictly increasing indices into sorted ``times`` (N,), each the nearest frame not
    already taken, when N >= K (else every frame: there are fewer than asked for).

    Plain nearest frames collide where frames are uneven (a variable frame rate, a header whose duration outruns
    the frames): two targets near one frame would keep K - 1 frames although K exist. Each index is clamped to
    [previous + 1, N - (K - i)], so the choice is among the frames that exist and equals the nearest frames
    whenever those are already distinct."""
    count, available = len(targets), len(times)
    if count >= available:
        return np.arange(available, dtype=np.int64)
    nearest = nearest_frames(times, targets)
    chosen = np.empty(count, dtype=np.int64)
    previous = -1
    for i, index in enumerate(nearest.tolist()):
        previous = min(max(index, previous + 1), available - (count - i))
        chosen[i] = previous
    return chosen


def select_frames(
    times: np.ndarray,
    start: float,
    end: float,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Sorted unique indices into ``times`` (N,) of the frames to keep from the window [start, end).

    An empty result means the window holds no frame.
    """
    lo, hi = np.searchsorted(times, [start, end], side="left")
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    targets = target_times(start, end, num_frames, fps, max_frames, available=int(hi - lo))
    if targets is None:
        return np.arange(lo, hi, dtype=np.int64)
    return (lo + distinct_nearest(times[lo:hi], targets)).astype(np.int64)
