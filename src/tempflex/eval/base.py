"""What a benchmark is to ``tempflex eval``: questions read from its published files, and its own scoring rule.

A benchmark implements ``Benchmark``; ``tempflex.eval.registry`` maps names to them (``get_benchmark(name)``).
Each reads its files exactly as its public release (and lmms-eval's task of the same name) lays them out, from a
local folder, and turns every item into a ``Question``: the video, the prompt as that task renders it, the answer in
the benchmark's own terms, the labels option scoring compares (``choices``), and the categories it aggregates by.
``judge`` applies the benchmark's rule to a model's raw output (a letter from option scoring or free text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

LETTERS = "ABCDEFGH"


@dataclass
class Question:
    id: str  # unique within the benchmark (its published question id where it has one)
    video: Path
    prompt: str  # the text after the video, as the benchmark's lmms-eval task renders it
    answer: str  # the right answer in the benchmark's own terms: a letter, "yes"/"no", an option label
    choices: list[str]  # what option scoring compares, in option order: letters, or "yes"/"no"
    options: list[str] = field(default_factory=list)  # the options' texts, same order (for --score text)
    groups: dict[str, str] = field(default_factory=dict)  # aggregation key -> this question's value
    start: float | None = None  # a window of the video in seconds (MVBench's bounds)
    end: float | None = None
    subtitles: list[tuple[float, float, str]] | None = None  # (start s, end s, text): shown for the sampled frames
    meta: dict = field(default_factory=dict)  # what the judge needs beyond the answer (e.g. option lines)

    def render(self, timestamps: Sequence[float] | None = None) -> str:
        """The prompt; with subtitles, those whose span covers a sampled frame go first (Video-MME's rule)."""
        if self.subtitles is None:
            return self.prompt
        times = list(timestamps or [])
        lines = [text for start, end, text in self.subtitles if any(start <= t < end for t in times)]
        body = "\n".join(dict.fromkeys(lines)) or "No subtitles available"
        return "This video's subtitles are listed below: \n" + body + "\n" + self.prompt


@dataclass(frozen=True)
class Verdict:
    extracted: str  # what the rule read from the output ("" when it found nothing)
    correct: bool
    matched: bool = True  # False when the rule could not read the output (scored wrong, or a seeded guess)


@runtime_checkable
class Benchmark(Protocol):
    name: str  # the registry name, as on the command line
    title: str  # e.g. "Video-MME"
    files: str  # the layout it reads, for `tempflex eval --list` and its errors
    groups: tuple[str, ...]  # aggregation keys, in report order (the first is plotted)
    headline: str | None  # None: accuracy over questions; a group key: the mean over that group's values
    max_new_tokens: int  # for free-text answers
    skip_empty: bool  # empty outputs leave the denominator (MVBench's aggregation)

    def load(self, data: Path, videos: Path | None = None) -> list[Question]: ...

    def judge(self, question: Question, output: str) -> Verdict: ...


def lettered(options: Sequence[str], style: str = "{letter}. {text}") -> list[str]:
    """Option lines ``A. text`` (or another ``style``) in order."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options, got {len(options)}")
    return [style.format(letter=LETTERS[i], text=str(text).strip()) for i, text in enumerate(options)]


OPTION_LINE = re.compile(r"^\s*\(?([A-H])[.):]\s+\S", re.MULTILINE)


def option_letters(prompt: str) -> list[str] | None:
    """The letters of a prompt's option lines ("A. ...", "(A) ...", "A) ...", "A: ..."), if they run A, B, ...; else
    None (the prompt offers no options to score)."""
    letters = OPTION_LINE.findall(prompt)
    if len(letters) >= 2 and letters == [LETTERS[i] for i in range(len(letters))]:
        return letters
    return None


def check_questions(questions: list[Question], source: Path) -> list[Question]:
    """Non-empty and with unique ids, or a one-line error naming the file."""
    if not questions:
        raise ValueError(f"{source} holds no questions")
    seen: set[str] = set()
    for q in questions:
        if q.id in seen:
            raise ValueError(f"{source}: question id {q.id!r} appears twice")
        seen.add(q.id)
    return questions
