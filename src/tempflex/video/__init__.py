"""Video input: decode files to sampled RGB frames with their timestamps (see docs/video.md).

``load_video(path, num_frames=None, fps=None, max_frames=None, start=None, end=None, backend="pyav")`` returns a
``DecodedVideo``; every failure to read a file raises ``VideoDecodeError`` (a ``ValueError``) naming the file.
"""

from tempflex.video.decode import DecodedVideo, load_video
from tempflex.video.errors import VideoDecodeError
from tempflex.video.probe import DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedVideo", "VideoDecodeError", "load_video"]
