"""Small named types for visual inputs travelling from the readers to the processor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tempflex.vision.patches import to_frames


@dataclass
class VideoClip:
    """Decoded frames of one video and the time of each frame in seconds.

    frames: (T, H, W, 3) uint8. timestamps: T presentation times, or None when unknown (then no time tags).
    """

    frames: torch.Tensor
    timestamps: list[float] | None = None

    def __post_init__(self) -> None:
        self.frames = to_frames(self.frames)
        if self.timestamps is not None:
            self.timestamps = [float(t) for t in self.timestamps]
            if len(self.timestamps) != self.frames.shape[0]:
                raise ValueError(
                    f"video has {self.frames.shape[0]} frames but {len(self.timestamps)} timestamps"
                )

    @classmethod
    def from_array(cls, frames: np.ndarray | torch.Tensor, fps: float | None = None) -> VideoClip:
        """Frames sampled at a constant ``fps`` (timestamps t = i / fps), or without times when fps is None."""
        clip = cls(torch.as_tensor(frames))
        if fps is not None:
            clip.timestamps = [i / fps for i in range(clip.num_frames)]
        return clip

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def as_clip(video: object) -> VideoClip:
    """A ``VideoClip``, a decoded video (``load_video``'s result) or (T, H, W, 3) uint8 frames, as a ``VideoClip``."""
    if isinstance(video, VideoClip):
        return video
    if hasattr(video, "to_clip"):
        return video.to_clip()
    if isinstance(video, (np.ndarray, torch.Tensor)):
        return VideoClip(video)
    raise TypeError(f"a video must be a VideoClip, a load_video result or a (T, H, W, 3) array, got {type(video)}")
