"""``load_video``: a video file to sampled RGB frames with their presentation times, fast and with clear errors.

Shapes: T frames kept, H x W pixels after rotation; frames are (T, H, W, 3) uint8.

The PyAV path: open and check the file (``probe``), list every frame's pts and keyframe flag (``Timeline``, from
the mp4 index when it is exact, else by demuxing every packet without decoding), pick the frames (``sampling``),
plan sequential decoding vs keyframe seeks (``plan``), decode (``backends``, seeks spread over parallel
decoders, one per CPU up to ``MAX_WORKERS``). The decord path uses decord's own frame index and ``get_batch`` with the same
sampling. See docs/video.md for every bad-input behaviour.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from tempflex.media import VideoClip
from tempflex.video import backends
from tempflex.video.errors import VideoDecodeError
from tempflex.video.plan import STRATEGIES, Run, Strategy, plan_runs
from tempflex.video.probe import (
    DEFAULT_MAX_PIXELS,
    IndexMismatch,
    Timeline,
    check_path,
    open_video,
    read_timeline,
)
from tempflex.video.sampling import select_frames, validate_request

Backend = Literal["pyav", "decord"]
DEFAULT_MAX_BYTES = 8 << 30  # 8 GiB of RGB frames: about 2900 frames of 720p; more is a request mistake
MAX_WORKERS = 4  # parallel decoders for keyframe seeks; each opens the file and holds a decoder


@dataclass
class DecodedVideo:
    """Frames sampled from one video file, and what is known about the file."""

    frames: torch.Tensor  # (T, H, W, 3) uint8, rotation applied
    timestamps: list[float]  # T presentation times in seconds from the stream start, increasing
    indices: list[int]  # T source frame numbers in presentation order (0-based)
    fps: float  # average frame rate of the stream
    duration: float  # seconds: the end of the last readable frame (of a truncated file: of what was read)
    size: tuple[int, int]  # (H, W) of the frames after rotation
    num_source_frames: int | None  # frames in the stream (readable ones, from its packets)
    path: str
    backend: str = "pyav"
    strategy: str = "sequential"  # what ran: "sequential" (one pass) or "seek" (one or more keyframe seeks)
    frames_decoded: int = 0  # frames the decoder produced, kept or not (the cost of the request)
    skipped_frames: int = 0  # wanted frames that could not be decoded (corrupt data) and are missing here
    truncated: bool = False  # the file ended before the container said it would

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def to_clip(self) -> VideoClip:
        """The frames and timestamps as the processor's ``VideoClip``."""
        return VideoClip(self.frames, list(self.timestamps))


def _window(path: Path, duration: float, start: float | None, end: float | None) -> tuple[float, float]:
    """[start, end) in seconds, ``end`` clamped to the duration."""
    lo = float(start or 0.0)
    hi = duration if end is None else min(float(end), duration)
    if lo >= duration:
        raise VideoDecodeError(path, f"start={lo:g} s is at or past the end of the video ({duration:.3f} s)")
    return lo, hi


def _kept(
    path: Path, frames: np.ndarray, filled: np.ndarray, wanted: np.ndarray
) -> tuple[torch.Tensor, list[int]]:
    """(T, H, W, 3) tensor of the decoded frames and their source indices; an error if none decoded."""
    if not filled.any():
        raise VideoDecodeError(
            path, f"none of the {len(wanted)} requested frames could be decoded (corrupt data)"
        )
    return torch.from_numpy(frames), [int(i) for i in wanted[filled]]


def _check_bytes(path: Path, frames: int, width: int, height: int, max_bytes: int) -> None:
    """Refuse a request whose RGB frames would not fit in ``max_bytes``, before decoding anything."""
    need = frames * width * height * 3
    if need > max_bytes:
        raise VideoDecodeError(
            path, f"{frames} frames of {width}x{height} need {need / 2**30:.1f} GiB, over max_bytes="
            f"{max_bytes / 2**30:.1f} GiB: ask for fewer with num_frames, fps or max_frames",
        )


def _workers() -> int:
    """Parallel decoders: the CPUs this process may run on, up to ``MAX_WORKERS``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


@dataclass
class _Attempt:
    """One pass of the PyAV path: the timeline, what was wanted, how it was reached, and what came out."""

    timeline: Timeline
    rate: Fraction | None  # the stream's average frame rate
    wanted: np.ndarray  # (T,) sorted frame indices
    runs: list[Run]
    buffer: backends.FrameBuffer
    stats: backends.DecodeStats


def _attempt(path: Path, request: dict, strategy: Strategy, max_pixels: int, use_index: bool) -> _Attempt:
    """Timeline, sampling, plan and decode; ``IndexMismatch`` escapes if the index timeline proves wrong."""
    timeline, rate = read_timeline(path, max_pixels, use_index)
    start, end = _window(path, timeline.duration, request["start"], request["end"])
    sizes = {key: request[key] for key in ("num_frames", "fps", "max_frames")}
    wanted = select_frames(timeline.times, start, end, **sizes)
    if len(wanted) == 0:
        raise VideoDecodeError(path, f"no frame in the window [{start:g}, {end:g}) s")
    _check_bytes(path, len(wanted), timeline.width, timeline.height, request["max_bytes"])
    runs = plan_runs(wanted, timeline.keyframe_before(), strategy)
    buffer, stats = backends.decode_pyav(path, timeline, runs, max_pixels, workers=_workers())
    return _Attempt(timeline, rate, wanted, runs, buffer, stats)


def _load_pyav(path: Path, request: dict, strategy: Strategy, max_pixels: int) -> DecodedVideo:
    try:
        got = _attempt(path, request, strategy, max_pixels, use_index=True)
    except IndexMismatch:  # the mp4 index was not the presentation order after all: start again from a scan
        got = _attempt(path, request, strategy, max_pixels, use_index=False)
    timeline, wanted, runs, stats = got.timeline, got.wanted, got.runs, got.stats
    times = timeline.times
    frames, order = _kept(path, got.buffer.frames(), got.buffer.filled, wanted)
    skipped = len(wanted) - len(order)
    if skipped:
        warnings.warn(
            f"{path}: {skipped} of {len(wanted)} frames could not be decoded and were skipped", stacklevel=3
        )
    fps = float(got.rate) if got.rate else timeline.num_frames / max(timeline.duration, 1e-9)
    return DecodedVideo(
        frames=frames,
        timestamps=[float(times[i]) for i in order],
        indices=order,
        fps=fps,
        duration=timeline.duration,
        size=(int(frames.shape[1]), int(frames.shape[2])),
        num_source_frames=timeline.num_frames,
        path=str(path),
        backend="pyav",
        strategy="sequential" if len(runs) == 1 else "seek",
        frames_decoded=stats.decoded,
        skipped_frames=skipped,
        truncated=timeline.truncated,
    )


def _load_decord(path: Path, request: dict, max_pixels: int) -> DecodedVideo:
    with open_video(path, max_pixels) as (_, stream):  # the same checks as PyAV: path, streams, size bound
        width, height = stream.width, stream.height
    reader, starts = backends.decord_timeline(path)
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 0.0
    duration = float(starts[-1]) + step
    start, end = _window(path, duration, request.pop("start"), request.pop("end"))
    max_bytes = request.pop("max_bytes")
    wanted = select_frames(starts, start, end, **request)
    _check_bytes(path, len(wanted), width, height, max_bytes)
    if len(wanted) == 0:
        raise VideoDecodeError(path, f"no frame in the window [{start:g}, {end:g}) s")
    batch = backends.decode_decord(path, reader, wanted)
    frames, order = _kept(path, batch, np.ones(len(wanted), dtype=bool), wanted)
    return DecodedVideo(
        frames=frames,
        timestamps=[float(starts[i]) for i in order],
        indices=order,
        fps=float(reader.get_avg_fps()),
        duration=duration,
        size=(int(frames.shape[1]), int(frames.shape[2])),
        num_source_frames=len(starts),
        path=str(path),
        backend="decord",
        strategy="decord",
    )


def load_video(
    path: str | Path,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    backend: Backend = "pyav",
    *,
    strategy: Strategy = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DecodedVideo:
    """Decode the sampled frames of a video file, with their presentation times.

    Sampling over the window [start, end) seconds (default: the whole stream; ``end`` is clamped to it):
    ``num_frames=N`` keeps the frames nearest to N segment centres t_i = start + (i + 0.5) * span / N; ``fps=r``
    keeps frames nearest to t_k = start + (k + 0.5) / r, or, if that needs more than ``max_frames``, falls back to
    N = ``max_frames`` uniform frames (the paper samples up to 64 frames in training and 128 at test time);
    neither keeps every frame, or ``max_frames`` uniform ones if there are more. Kept frames are unique and in
    time order, so a short video gives fewer frames than asked for (a one-frame video gives one frame).

    ``backend``: "pyav" (default) or "decord" (optional package, same sampling). ``strategy`` (PyAV only):
    "auto" picks per gap between decoding forward and seeking to a keyframe by a cost model; "sequential" and
    "seek" force one way (same frames, different speed). ``max_bytes`` bounds the RGB output (T * H * W * 3,
    default 8 GiB) and ``max_pixels`` bounds width * height, both checked before decoding. Frames that fail to decode are skipped with a warning and counted in ``skipped_frames``.

    Raises ``ValueError`` for bad arguments and ``VideoDecodeError`` (a ``ValueError``) naming the file and the
    cause when nothing usable can be read.
    """
    validate_request(num_frames, fps, max_frames, start, end)
    if backend not in ("pyav", "decord"):
        raise ValueError(f"backend must be 'pyav' or 'decord', got {backend!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    path = check_path(path)
    request = {"num_frames": num_frames, "fps": fps, "max_frames": max_frames, "start": start, "end": end,
               "max_bytes": max_bytes}
    if backend == "decord":
        return _load_decord(path, request, max_pixels)
    return _load_pyav(path, request, strategy, max_pixels)
