"""``ServeSettings``: everything ``tempflex serve`` is told, each limit with its default and what it guards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class ServeSettings:
    """Typed server configuration; validated when built (``ValueError`` names the bad field)."""

    model: Path | None = None  # a saved TempFlex model directory; None: the packaged default, tempflex-tiny
    model_name: str | None = None  # the id clients send as "model"; None: the model directory's name
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8000
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>" (401 otherwise)
    allowed_media_paths: tuple[Path, ...] = ()  # file:// URLs must resolve (real path) inside one of these roots
    allowed_media_domains: tuple[str, ...] = ()  # hosts http(s) URLs may name; none by default
    max_body_bytes: int = 64 * MiB  # request body; more gets 413
    max_media_items: int = 8  # images + videos in one request (vLLM's --limit-mm-per-prompt)
    max_frames: int = 64  # frames sampled from one video (num_frames, or what fps asks for)
    max_pixels: int = 4096 * 4096  # width * height of an image or of a video frame, checked before decoding
    max_video_seconds: float = 600.0  # duration of one video, read from the container before decoding
    max_video_bytes: int = 256 * MiB  # size of one video file or data URL payload; more gets 413
    max_decode_seconds: float = 30.0  # wall time to decode the media of one request
    request_timeout: float = 120.0  # wall time of a whole request, queueing included; more gets 504
    max_queue: int = 64  # requests inside the server at once (decoding, waiting or running); more gets 429
    max_batch: int = 8  # compatible requests (option scoring with the same shapes) run in one forward pass
    max_tokens: int = 1024  # the largest max_tokens a request may ask for
    threads: int | None = None  # torch CPU threads; None: torch's default
    examples_dir: Path | None = None  # videos (+ questions.jsonl) the web page offers; None: none
    retry_after: int = 1  # seconds a 429 / 503 tells the client to wait

    def __post_init__(self) -> None:
        positive = ("max_body_bytes", "max_media_items", "max_frames", "max_pixels", "max_video_seconds",
                    "max_video_bytes", "max_decode_seconds", "request_timeout", "max_queue", "max_batch",
                    "max_tokens", "retry_after")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        for root in self.allowed_media_paths:
            if not Path(root).is_dir():
                raise ValueError(f"--allowed-media-path {root} is not a directory")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key is empty")

    @property
    def roots(self) -> tuple[Path, ...]:
        """The allowed media roots as real paths (symlinks resolved)."""
        return tuple(Path(r).resolve(strict=True) for r in self.allowed_media_paths)
