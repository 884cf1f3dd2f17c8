"""Open a video file with PyAV, check it, and list its frames from the packets alone (no decoding).

Every check that can fail before decoding lives here, so that each failure becomes one ``VideoDecodeError``
naming the file and the cause: a missing path, a directory, a file FFmpeg cannot open (not media, or an mp4
truncated before its index), no video stream (e.g. audio only), no frame size, a frame size over ``max_pixels``
(checked from the stream header, before any frame is decoded), or a stream without a single packet.

The ``Timeline`` lists every frame of the stream in presentation order with its pts and keyframe flag, so the
sampler can pick frames by their real presentation times (variable frame rate is right) and the planner knows
where the keyframes are. It comes from one of two places (``read_timeline``):
- the mp4 index (the sample tables FFmpeg has already parsed on opening: ``stream.index_entries``), about 25 ms
  for 36,000 frames, when it is provably the same list: an mp4 stream without frame reordering (no B-frames,
  so each frame's pts is its dts, the index timestamp), a constant frame step, no edit-list discards, every
  sample inside the file, and the first and last packets demuxed agree with it;
- otherwise, demuxing every packet without decoding it (microseconds per frame, but it reads the whole file:
  0.2 s for a 191-MB hour of video). Decoding double-checks an index timeline: a packet whose pts is not its
  dts raises ``IndexMismatch`` and the caller starts again from a full scan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from tempflex.video.errors import VideoDecodeError

DEFAULT_MAX_PIXELS = 8192 * 8192  # 67M pixels per frame: far above 8K UHD, far below a decompression bomb
TEXT_DEMUXERS = frozenset({"tty"})  # FFmpeg's ANSI-art reader renders any *.txt file as "video"
MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"  # the only demuxer whose index lists every sample
END_CHECK_PACKETS = 16  # packets demuxed at each end of the stream to confirm an index timeline
INDEX_KEYFRAME, INDEX_DISCARD = 1, 2  # AVINDEX_KEYFRAME, AVINDEX_DISCARD_FRAME


class IndexMismatch(Exception):
    """A packet disagrees with the timeline read from the index: the timeline must come from a full scan."""


def _ffmpeg_cause(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


def check_path(path: str | Path) -> Path:
    """``path`` as a Path if it names an existing regular file, else ``VideoDecodeError``."""
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "is a directory, not a video file")
    if not path.is_file():
        raise VideoDecodeError(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)")
    return path


def _video_stream(
    container: av.container.InputContainer, path: Path, max_pixels: int
) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        found = f"only {'/'.join(kinds)} streams" if kinds else "no streams at all"
        raise VideoDecodeError(path, f"has no video stream ({found})")
    stream = container.streams.video[0]
    width, height = stream.width or 0, stream.height or 0
    if width <= 0 or height <= 0:
        raise VideoDecodeError(path, "video stream has no frame size (no decodable header)")
    if width * height > max_pixels:
        raise VideoDecodeError(
            path,
            f"frame size {width}x{height} ({width * height} pixels) is over the limit of {max_pixels} pixels",
        )
    return stream


def _still_image_problem(container: av.container.InputContainer, name: str) -> str:
    """What to say of a file FFmpeg opens with a still-image reader: an image, or not media at all."""
    try:
        next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, IndexError, OSError):
        return f"not a video or an image: FFmpeg's still-image reader ({name}) cannot decode it"
    return f"is a still image ({name}), not a video: pass it with --image (or as an image)"


@contextmanager
def open_video(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """(container, first video stream) of a checked file, closed on exit; failures raise ``VideoDecodeError``."""
    path = check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except PermissionError:
        raise VideoDecodeError(path, "permission denied: the file cannot be read") from None
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        cause = _ffmpeg_cause(exc)
        raise VideoDecodeError(
            path, f"cannot open as a video ({cause}): not a media file, or truncated or corrupt"
        )
    with container:
        if container.format.name in TEXT_DEMUXERS:
            raise VideoDecodeError(
                path, f"not a video file (FFmpeg reads it as text: {container.format.name})"
            )
        name = container.format.name
        if name in ("image2", "image2pipe") or name.endswith("_pipe"):  # FFmpeg's still-image readers
            raise VideoDecodeError(path, _still_image_problem(container, name))
        yield container, _video_stream(container, path, max_pixels)


@dataclass(frozen=True)
class Timeline:
    """The frames of one video stream in presentation order, N of them.

    pts: (N,) int64 sorted presentation times in ``time_base`` units. keyframe: (N,) bool. ``start_pts`` is the
    stream's start (time 0 of the timestamps), ``end_pts`` where the last frame ends. ``truncated`` is True when
    the container promised more packets than could be read. ``source`` says where the list came from (equal
    lists either way; an "index" one is checked again packet by packet while decoding).
    """

    pts: np.ndarray
    keyframe: np.ndarray
    time_base: Fraction
    start_pts: int
    end_pts: int
    truncated: bool
    source: Literal["scan", "index"] = "scan"
    width: int = 0  # coded frame size of the stream (before rotation); 0 when unknown
    height: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.pts.shape[0])

    @property
    def times(self) -> np.ndarray:
        """(N,) float64 seconds from the stream start."""
        # multiply then divide once, so that e.g. 20992 * 1 / 12800 is exactly the double nearest to 1.64
        return (
            (self.pts - self.start_pts).astype(np.float64)
            * self.time_base.numerator
            / self.time_base.denominator
        )

    @property
    def duration(self) -> float:
        return float((self.end_pts - self.start_pts) * self.time_base)

    def keyframe_before(self) -> np.ndarray:
        """(N,) int64: for each frame, the index of the last keyframe at or before it (0 if there is none)."""
        marks = np.where(self.keyframe, np.arange(self.num_frames), 0)
        return np.maximum.accumulate(marks)


def scan_timeline(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> Timeline:
    """Demux (not decode) every packet of ``stream``; a read error ends the scan and marks the file truncated."""
    pts: list[int] = []
    key: list[bool] = []
    durations: list[int] = []
    failed = False
    try:
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.size == 0 or stamp is None:  # the final flush packet, or a packet without any time
                continue
            pts.append(stamp)
            key.append(packet.is_keyframe)
            durations.append(packet.duration or 0)
    except (av.FFmpegError, OSError):
        failed = True  # a file cut short or damaged after the header: keep the packets read so far
    if not pts:
        raise VideoDecodeError(path, "video stream has no frames")
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    sorted_pts = np.asarray(pts, dtype=np.int64)[order]
    last = int(sorted_pts[-1])
    step = int(np.median(np.diff(sorted_pts))) if len(pts) > 1 else 0
    end = last + (durations[int(order[-1])] or step)
    start = stream.start_time if stream.start_time is not None else int(sorted_pts[0])
    promised = stream.frames or 0  # 0 when the container stores no count
    return Timeline(
        pts=sorted_pts,
        keyframe=np.asarray(key, dtype=bool)[order],
        time_base=stream.time_base or Fraction(1, 1),
        start_pts=min(int(start), int(sorted_pts[0])),
        end_pts=end,
        truncated=failed or len(pts) < promised,
    )


def _index_candidate(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path
) -> tuple[np.ndarray, np.ndarray] | None:
    """(pts, keyframe) of every frame from the mp4 index, or None when they might not be the presentation times.

    Reads only what FFmpeg parsed on opening (no packet is read): the caller must still confirm both ends.
    """
    if container.format.name != MP4_DEMUXER or stream.codec_context.has_b_frames:
        return None  # another demuxer's index may list keyframes only; B-frames reorder: pts != index dts
    entries = stream.index_entries
    count = len(entries)
    if count == 0 or count != (stream.frames or 0):
        return None  # e.g. a fragmented mp4, whose index grows while reading
    table = np.array([(e.timestamp, e.flags, e.pos, e.size) for e in entries], dtype=np.int64)  # (N, 4)
    stamps, flags, pos, size = table.T
    steps = np.diff(stamps)
    if count > 1 and not (steps[0] > 0 and np.all(steps == steps[0])):
        return None  # variable frame rate or out-of-order samples: leave it to the full scan
    if np.any(flags & INDEX_DISCARD) or np.any(size <= 0) or int((pos + size).max()) > path.stat().st_size:
        return None  # edit-list discards, empty samples, or a file cut short: the scan reports these exactly
    return stamps, (flags & INDEX_KEYFRAME).astype(bool)


def _matches(packets: list[av.Packet], pts: np.ndarray, keyframe: np.ndarray) -> bool:
    return len(packets) == len(pts) and all(
        p.pts == p.dts == int(t) and p.is_keyframe == bool(k) for p, t, k in zip(packets, pts, keyframe)
    )


def _demux_from(container, stream, pts: int, count: int) -> list[av.Packet]:
    """``count`` packets of ``stream`` from the sample at ``pts`` on (fewer at the end of the file)."""
    container.seek(pts, stream=stream, backward=True, any_frame=True)
    packets = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the final flush packet
        packets.append(packet)
        if len(packets) == count:
            break
    return packets


def index_timeline(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    pts: np.ndarray,
    keyframe: np.ndarray,
) -> Timeline | None:
    """The Timeline from the index's (pts, keyframe) if the packets at both ends agree with it, else None.

    The first and last ``END_CHECK_PACKETS`` packets are demuxed and must match the index; the last one's
    duration gives the end. The container is left at an arbitrary position.
    """
    m = min(END_CHECK_PACKETS, len(pts))
    try:
        head = _demux_from(container, stream, int(pts[0]), m)
        tail = _demux_from(container, stream, int(pts[-m]), m)
    except (av.FFmpegError, OSError):
        return None
    if not (_matches(head, pts[:m], keyframe[:m]) and _matches(tail, pts[-m:], keyframe[-m:])):
        return None
    step = int(pts[1] - pts[0]) if len(pts) > 1 else 0
    start = stream.start_time if stream.start_time is not None else int(pts[0])
    return Timeline(
        pts=pts,
        keyframe=keyframe,
        time_base=stream.time_base or Fraction(1, 1),
        start_pts=min(int(start), int(pts[0])),
        end_pts=int(pts[-1]) + (tail[-1].duration or step),
        truncated=False,
        source="index",
    )


def read_timeline(path: Path, max_pixels: int, use_index: bool = True) -> tuple[Timeline, Fraction | None]:
    """(Timeline, the stream's average rate): from the mp4 index when exact (``use_index``), else a full scan."""
    with open_video(path, max_pixels) as (container, stream):
        rate, size = stream.average_rate, {"width": stream.width, "height": stream.height}
        candidate = _index_candidate(container, stream, path) if use_index else None
        if candidate is None:  # nothing read yet: scan from the start
            return dataclasses.replace(scan_timeline(container, stream, path), **size), rate
        timeline = index_timeline(container, stream, *candidate)
    if timeline is None:  # the index checks moved the demuxer: scan from a fresh start
        with open_video(path, max_pixels) as (container, stream):
            timeline = scan_timeline(container, stream, path)
    return dataclasses.replace(timeline, **size), rate
