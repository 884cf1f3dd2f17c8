"""The one error type of the video readers."""

from __future__ import annotations

from pathlib import Path


class VideoDecodeError(ValueError):
    """A video file could not be read: the message names the file and the cause, on one line.

    A ``ValueError`` so that callers (and the command line's ``user_errors``) treat it as bad input, not a bug.
    """

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = " ".join(str(cause).split())  # one line, whatever FFmpeg said
        super().__init__(f"{self.path}: {self.cause}")
