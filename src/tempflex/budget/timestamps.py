"""Timestamp encoders: the text tags written before a frame's visual tokens, and what they cost.

The tag text is the processor's (``<t=1.5s>``, one decimal), so a model trained with ``video_timestamps`` reads
the same tags here. A frame with an unknown time (NaN) gets no tag, as in the processor.

- ``none``: no tags.
- ``frame``: one tag per frame that keeps tokens (the processor's format).
- ``segment``: one tag per window of ``seconds`` that keeps tokens, written before the window's first kept frame;
  the tag shows the window's start, so its text (and cost) depends only on the window (Tempo writes one tag per
  segment of memory tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tempflex.budget.base import register

TAG_FORMAT = "<t={:.1f}s>"  # the processor's ``_video_text`` tag


def tag(seconds: float) -> str:
    return TAG_FORMAT.format(seconds)


def count_tag_tokens(tokenizer: Any, tags: Sequence[str]) -> int:
    """Text tokens of the tags, each tokenized on its own (as the pipeline writes them, between special tokens)."""
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in tags if t)


@register("timestamps", "none")
@dataclass(frozen=True)
class NoTags:
    def tags(self, timestamps: Sequence[float]) -> list[str]:
        return [""] * len(timestamps)

    def count(self, tokenizer: Any, tags: Sequence[str]) -> int:
        return 0


@register("timestamps", "frame")
@dataclass(frozen=True)
class FrameTags:
    def tags(self, timestamps: Sequence[float]) -> list[str]:
        return ["" if math.isnan(t) else tag(t) for t in timestamps]

    def count(self, tokenizer: Any, tags: Sequence[str]) -> int:
        return count_tag_tokens(tokenizer, tags)


@register("timestamps", "segment")
@dataclass(frozen=True)
class SegmentTags:
    seconds: float = 4.0  # window length; a window's tag shows its start, k * seconds

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be > 0, got {self.seconds}")

    def tags(self, timestamps: Sequence[float]) -> list[str]:
        out, seen = [], set()
        for t in timestamps:
            window = None if math.isnan(t) else math.floor(t / self.seconds + 1e-9)
            out.append("" if window is None or window in seen else tag(window * self.seconds))
            seen.add(window)
        return out

    def count(self, tokenizer: Any, tags: Sequence[str]) -> int:
        return count_tag_tokens(tokenizer, tags)
