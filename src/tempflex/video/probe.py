"""Open a video file with PyAV, check it, and list its frames from the packets alone (no decoding).

Every check that can fail before decoding lives here, so that each failure becomes one ``VideoDecodeError``
naming the file and the cause: a missing path, a directory, a file FFmpeg cannot open (not media, or an mp4
truncated before its index), no video stream (e.g. audio only), no frame size, a frame size over ``max_pixels``
(checked from the stream header, before any frame is decoded), or a stream without a single packet.

The ``Timeline`` lists every frame of the stream in presentation order with its pts and keyframe flag. It comes
from demuxing the packets without decoding them, which reads the file but costs microseconds per frame, so the
sampler can pick frames by their real presentation times (variable frame rate is right) and the planner knows
where the keyframes are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tempflex.video.errors import VideoDecodeError

DEFAULT_MAX_PIXELS = 8192 * 8192  # 67M pixels per frame: far above 8K UHD, far below a decompression bomb
TEXT_DEMUXERS = frozenset({"tty"})  # FFmpeg's ANSI-art reader renders any *.txt file as "video"


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


@contextmanager
def open_video(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """(container, first video stream) of a checked file, closed on exit; failures raise ``VideoDecodeError``."""
    path = check_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
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
        yield container, _video_stream(container, path, max_pixels)


@dataclass(frozen=True)
class Timeline:
    """The frames of one video stream in presentation order, N of them.

    pts: (N,) int64 sorted presentation times in ``time_base`` units. keyframe: (N,) bool. ``start_pts`` is the
    stream's start (time 0 of the timestamps), ``end_pts`` where the last frame ends. ``truncated`` is True when
    the container promised more packets than could be read.
    """

    pts: np.ndarray
    keyframe: np.ndarray
    time_base: Fraction
    start_pts: int
    end_pts: int
    truncated: bool

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
