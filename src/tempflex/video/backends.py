"""The decoders behind ``load_video``: PyAV (default) following a plan of runs, and decord (optional).

Both return the kept frames as (H, W, 3) uint8 arrays with rotation applied. Only kept frames are converted to
RGB; the others are decoded (they are needed as references) and dropped.

PyAV threading: a plan of one run (a sequential pass) is decoded by one decoder with FFmpeg's frame and slice
threads (``thread_type="AUTO"``). A plan of several runs (keyframe seeks) is split into contiguous groups of
about equal cost (``plan.split_runs``), each decoded by its own container and single-threaded decoder in a
Python thread (PyAV releases the GIL while FFmpeg decodes). GOPs are independent, so this parallelism costs no
synchronisation per frame and no frame-thread pipeline refill after each seek, which on small frames eat what
frame threads gain. Frames are bit-identical either way.
"""

from __future__ import annotations

import threading
from collections.abc import Container, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tempflex.video.errors import VideoDecodeError
from tempflex.video.plan import Run, split_runs
from tempflex.video.probe import IndexMismatch, Timeline, open_video


@dataclass
class DecodeStats:
    decoded: int = 0  # frames that came out of the decoder, kept or not (skipped non-reference ones are not)
    errors: int = 0  # packets the decoder rejected
    seeks: int = 0

    def add(self, other: DecodeStats) -> None:
        self.decoded += other.decoded
        self.errors += other.errors
        self.seeks += other.seeks


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Apply a display-matrix rotation (counter-clockwise degrees, rounded to a multiple of 90) to (H, W, 3)."""
    quarter_turns = round(degrees / 90) % 4
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns))  # (H, W, 3) -> (W, H, 3) for odd turns


def _frames(
    container: av.container.InputContainer,
    stream,
    keep: Container[int],
    stats: DecodeStats,
    pts_is_dts: bool = False,
) -> Iterator[av.VideoFrame]:
    """Decoded frames from the demuxer's position on; packets the decoder rejects are counted and skipped.

    Packets of frames not in ``keep`` (pts) are decoded with ``skip_frame="NONREF"``: a frame no other frame
    refers to (most B-frames) is then not decoded at all, while every reference frame still is, so kept
    frames are bit-identical. FFmpeg's frame threads pick the setting up per packet. ``pts_is_dts``: the
    timeline came from the index, which holds dts; a packet whose pts differs raises ``IndexMismatch``.
    """
    codec = stream.codec_context
    try:
        for packet in container.demux(stream):
            if pts_is_dts and packet.size and packet.pts != packet.dts:
                raise IndexMismatch(f"packet pts {packet.pts} != dts {packet.dts}")
            mode = "DEFAULT" if packet.pts is None or packet.pts in keep else "NONREF"
            if codec.skip_frame != mode:
                codec.skip_frame = mode
            try:
                frames = packet.decode()
            except av.FFmpegError:
                stats.errors += 1
                continue
            for frame in frames:
                stats.decoded += 1
                yield frame
    except (av.FFmpegError, OSError):
        stats.errors += 1  # the demuxer hit unreadable data (e.g. a truncated file): the run ends here


def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24", width=width, height=height)  # (H, W, 3); rescales a size change
    return rotate(image, frame.rotation or 0)


class FrameBuffer:
    """The (T, H, W, 3) uint8 output, allocated at the first kept frame and filled in place.

    Writing each frame into its slot saves the copy (and the page faults of a second large allocation) that
    stacking T separate arrays costs: a third of the time for 128 frames of 720p.
    """

    def __init__(self, count: int) -> None:
        self.data: np.ndarray | None = None
        self.filled = np.zeros(count, dtype=bool)
        self._allocating = threading.Lock()  # parallel decoders fill distinct slots, but allocate once

    def put(self, slot: int, image: np.ndarray) -> None:
        if self.data is None:
            with self._allocating:
                if self.data is None:
                    self.data = np.empty((len(self.filled), *image.shape), dtype=np.uint8)  # (T, H, W, 3)
        self.data[slot] = image
        self.filled[slot] = True

    def frames(self) -> np.ndarray:
        """(T', H, W, 3): the filled slots in order (a copy only when some frame is missing)."""
        if self.data is None:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        return self.data if self.filled.all() else self.data[self.filled]


def _decode_runs(
    path: Path,
    timeline: Timeline,
    runs: list[Run],
    slot_of: dict[int, int],
    buffer: FrameBuffer,
    max_pixels: int,
    frame_threads: bool,
) -> DecodeStats:
    """Decode ``runs`` on one container into ``buffer``; ``frame_threads``: FFmpeg threads, else one thread."""
    stats = DecodeStats()
    with open_video(path, max_pixels) as (container, stream):
        if frame_threads:
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1
        width, height = stream.width, stream.height
        for n, run in enumerate(runs):
            if n > 0 or run.seek_index > 0:  # a freshly opened container already stands at frame 0
                container.seek(
                    int(timeline.pts[run.seek_index]), stream=stream, backward=True, any_frame=False
                )
                stats.seeks += 1
            last = int(timeline.pts[run.wanted[-1]])
            check = timeline.source == "index"
            for frame in _frames(container, stream, slot_of.keys(), stats, pts_is_dts=check):
                if frame.pts is None:
                    continue
                slot = slot_of.get(frame.pts)
                if slot is not None and not frame.is_corrupt:
                    try:
                        image = _to_rgb(frame, width, height)
                    except (av.FFmpegError, ValueError):  # a frame that will not convert counts as corrupt
                        continue
                    buffer.put(slot, image)
                if frame.pts >= last:
                    break
    return stats


def decode_pyav(
    path: Path, timeline: Timeline, runs: list[Run], max_pixels: int, workers: int = 1
) -> tuple[FrameBuffer, DecodeStats]:
    """The wanted frames of ``runs`` (slots in the order of all wanted indices) and what decoding cost.

    ``workers``: at most this many decoders in parallel (see the module docstring). A frame is matched to the
    timeline by its pts. Frames that fail to decode, or that the decoder flags as corrupt, leave their slot
    empty. Raises ``IndexMismatch`` if an index timeline turns out not to hold the presentation times.
    """
    wanted = [i for run in runs for i in run.wanted]  # sorted: runs are in order
    buffer = FrameBuffer(len(wanted))
    slot_of = {int(timeline.pts[i]): slot for slot, i in enumerate(wanted)}
    groups = split_runs(runs, workers)
    if len(groups) == 1:
        stats = _decode_runs(path, timeline, runs, slot_of, buffer, max_pixels, frame_threads=True)
        return buffer, stats
    stats = DecodeStats()
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = [
            pool.submit(_decode_runs, path, timeline, group, slot_of, buffer, max_pixels, False)
            for group in groups
        ]
        for future in futures:
            stats.add(future.result())
    return buffer, stats


def import_decord():
    try:
        import decord
    except ImportError as exc:
        raise ImportError(
            "backend='decord' needs the decord package (pip install decord); the default backend='pyav' does not"
        ) from exc
    return decord


def decord_timeline(path: Path):
    """(reader, (N,) frame start times in seconds) from decord; failures raise ``VideoDecodeError``."""
    decord = import_decord()
    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
        count = len(reader)
        times = reader.get_frame_timestamp(list(range(count)))[:, 0] if count else np.zeros(0)
    except (RuntimeError, decord.DECORDError) as exc:
        raise VideoDecodeError(path, f"decord cannot read it ({str(exc).splitlines()[0]})") from None
    if count == 0:
        raise VideoDecodeError(path, "video stream has no frames")
    return reader, np.asarray(times, dtype=np.float64)


def decode_decord(path: Path, reader, indices: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) frames through decord's ``get_batch`` (which seeks or reads on by itself)."""
    decord = import_decord()
    try:
        return reader.get_batch([int(i) for i in indices]).asnumpy()  # rotation already applied by decord
    except (RuntimeError, decord.DECORDError) as exc:
        raise VideoDecodeError(path, f"decord cannot decode it ({str(exc).splitlines()[0]})") from None
