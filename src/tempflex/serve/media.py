"""Media of a request: URLs to files under the security rules, then decoded under the limits.

URLs: ``data:<mime>;base64,...`` (written to a private temporary file, decoded, deleted); ``file://`` only when
its resolved real path (symlinks followed, ``..`` collapsed) lies inside an ``--allowed-media-path`` root, is a
regular file and is not under /proc, /sys or /dev; ``http(s)://`` only for a host named by
``--allowed-media-domains`` (fetched without following redirects, bounded in bytes and time). Everything else is
refused with a 4xx naming the rule.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tempflex.serve.errors import APIError, bad_request
from tempflex.serve.settings import ServeSettings

SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))  # never media, whatever the roots say
FETCH_TIMEOUT = 10.0  # seconds to connect to / read from an allowed http(s) host
SUFFIXES = {"video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
            "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


@dataclass
class FrameRequest:
    """How many frames to sample from one video: ``num_frames`` uniform, else ``fps``, else the default."""

    num_frames: int | None = None
    fps: float | None = None


@dataclass
class MediaItem:
    """One decoded image or video of a request, in prompt order."""

    kind: Literal["image", "video"]
    source: str  # the URL's file name, for messages (never the data itself)
    data: object  # PIL image, or a DecodedVideo
    frames: int
    timestamps: list[float] = field(default_factory=list)  # seconds, per frame (videos)
    seconds: float = 0.0  # decode time


# -- URLs to files ---------------------------------------------------------------------------------------------------
@contextmanager
def media_file(url: str, kind: str, settings: ServeSettings, param: str) -> Iterator[Path]:
    """A local file holding the media of ``url``; temporary files are removed on exit."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "data":
        with _temporary(_data_bytes(url, kind, settings, param), _data_suffix(url)) as path:
            yield path
    elif scheme == "file":
        yield allowed_file(url, settings, param)
    elif scheme in ("http", "https"):
        host = urllib.parse.urlsplit(url).hostname or ""
        if host.lower() not in {d.lower() for d in settings.allowed_media_domains}:
            raise bad_request(f"{scheme} media from host {host!r} is refused: the server allows no such host "
                              "(--allowed-media-domains)", param=param, code="media_url_refused")
        with _temporary(_fetch(url, settings, param), Path(urllib.parse.urlsplit(url).path).suffix) as path:
            yield path
    else:
        raise bad_request(f"unsupported media URL scheme {scheme or url[:16]!r}: use data:, file:// or http(s)://",
                          param=param, code="media_url_refused")


def allowed_file(url: str, settings: ServeSettings, param: str) -> Path:
    """The real path of a ``file://`` URL if it is a regular file inside an allowed root (else 400)."""
    if not settings.allowed_media_paths:
        raise bad_request("file:// URLs are disabled: start the server with --allowed-media-path DIR",
                          param=param, code="media_url_refused")
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise bad_request(f"file:// URL names a host ({parts.netloc!r}): only local files", param=param,
                          code="media_url_refused")
    raw = urllib.parse.unquote(parts.path)
    if "\x00" in raw or not raw.startswith("/"):
        raise bad_request("file:// URL must hold an absolute path", param=param, code="media_url_refused")
    try:
        real = Path(raw).resolve(strict=True)
    except (OSError, RuntimeError):
        raise bad_request(f"no such media file: {raw}", param=param, code="media_not_found") from None
    inside = any(real.is_relative_to(root) for root in settings.roots)
    if not inside or any(real.is_relative_to(tree) for tree in SYSTEM_TREES):
        raise bad_request(f"{raw} is outside the allowed media roots (its real path is {real})", param=param,
                          code="media_url_refused")
    if not stat.S_ISREG(real.stat().st_mode):
        raise bad_request(f"{raw} is not a regular file", param=param, code="media_url_refused")
    return real


def _data_bytes(url: str, kind: str, settings: ServeSettings, param: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise bad_request("a data: URL must be data:<mime>;base64,<payload>", param=param)
    mime = header[5:-7].lower()
    if mime and not mime.startswith(("image/", "video/", "application/octet-stream")):
        raise bad_request(f"data: URL has mime type {mime!r}: not an image or video", param=param)
    if kind == "video" and len(payload) * 3 // 4 > settings.max_video_bytes:
        raise too_big_video(len(payload) * 3 // 4, settings, param)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("the data: URL payload is not valid base64", param=param) from None


def _data_suffix(url: str) -> str:
    return SUFFIXES.get(url[5:].split(";", 1)[0].lower(), "")


def _fetch(url: str, settings: ServeSettings, param: str) -> bytes:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # a redirect could lead to a host that is not allowed
            return None

    opener = urllib.request.build_opener(NoRedirect)
    limit = max(settings.max_video_bytes, settings.max_body_bytes)
    try:
        with opener.open(url, timeout=FETCH_TIMEOUT) as response:
            data = response.read(limit + 1)
    except OSError as err:
        raise bad_request(f"cannot fetch {url}: {err}", param=param, code="media_fetch_failed") from None
    if len(data) > limit:
        raise APIError(413, f"{url} is larger than {limit} bytes", param=param, code="media_too_large")
    return data


@contextmanager
def _temporary(data: bytes, suffix: str) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix="tempflex-serve-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield Path(name)
    finally:
        os.unlink(name)


def too_big_video(size: int, settings: ServeSettings, param: str) -> APIError:
    return APIError(413, f"the video has {size} bytes, more than --max-video-bytes {settings.max_video_bytes}",
                    param=param, code="media_too_large")


# -- files to frames -------------------------------------------------------------------------------------------------
def decode_image(path: Path, settings: ServeSettings, param: str, name: str) -> MediaItem:
    from PIL import Image, UnidentifiedImageError

    from tempflex.image import load_image

    start = time.perf_counter()
    try:
        with Image.open(path) as lazy:  # header only: the size before any pixel is decoded
            width, height = lazy.size
    except (UnidentifiedImageError, OSError) as err:
        raise bad_request(f"{name} is not a readable image ({type(err).__name__})", param=param,
                          code="media_decode_failed") from None
    if width * height > settings.max_pixels:
        raise bad_request(f"{name} is {width}x{height} = {width * height} pixels, more than --max-pixels "
                          f"{settings.max_pixels}", param=param, code="limit_exceeded")
    try:
        image = load_image(path, max_pixels=settings.max_pixels)
    except ValueError as err:
        raise bad_request(f"{name}: {err}", param=param, code="media_decode_failed") from None
    return MediaItem("image", name, image, 1, [], time.perf_counter() - start)


def decode_video(path: Path, settings: ServeSettings, want: FrameRequest, param: str, name: str,
                 default_frames: int) -> MediaItem:
    from tempflex.video import VideoDecodeError, load_video

    start = time.perf_counter()
    size = path.stat().st_size
    if size > settings.max_video_bytes:
        raise too_big_video(size, settings, param)
    try:
        _check_stream(path, settings, param, name)
        if want.num_frames is not None or want.fps is None:
            frames = want.num_frames or min(default_frames, settings.max_frames)
            decoded = load_video(path, num_frames=frames, max_pixels=settings.max_pixels)
        else:
            decoded = load_video(path, fps=want.fps, max_frames=settings.max_frames, max_pixels=settings.max_pixels)
    except VideoDecodeError as err:
        raise bad_request(f"{name}: {err.cause}", param=param, code="media_decode_failed") from None
    if decoded.truncated:
        raise bad_request(f"{name} is cut off: the file ends before its container says it should", param=param,
                          code="media_decode_failed")
    return MediaItem("video", name, decoded, decoded.num_frames, [float(t) for t in decoded.timestamps],
                     time.perf_counter() - start)


def _check_stream(path: Path, settings: ServeSettings, param: str, name: str) -> None:
    """Frame size and duration from the container, before decoding."""
    from tempflex.video.probe import open_video

    with open_video(path) as (container, stream):
        width, height = stream.codec_context.width, stream.codec_context.height
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        else:
            seconds = (container.duration or 0) / 1e6
    if width * height > settings.max_pixels:
        raise bad_request(f"{name} has {width}x{height} = {width * height} pixels a frame, more than --max-pixels "
                          f"{settings.max_pixels}", param=param, code="limit_exceeded")
    if seconds > settings.max_video_seconds:
        raise bad_request(f"{name} lasts {seconds:.1f} s, more than --max-video-seconds {settings.max_video_seconds:g}",
                          param=param, code="limit_exceeded")


def source_name(url: str) -> str:
    """What a message may call the media: a file's name, never a data URL's payload."""
    if url.lower().startswith("data:"):
        return "the " + url[5:].split(";", 1)[0] + " data URL"
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or url[:64]
