"""The multiple-choice prompt shared by the probes, their evaluation and ``tempflex ask --option``."""

from __future__ import annotations

LETTERS = "ABCDEFGH"  # option letters, in order
PROMPT_TAIL = "Answer with the option's letter."


def format_question(question: str, options: list[str]) -> str:
    """``question``, one ``(A) option`` line per option, then the instruction to answer with the letter."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options, got {len(options)}")
    lines = [f"({LETTERS[i]}) {option}" for i, option in enumerate(options)]
    return "\n".join([question.strip(), *lines, PROMPT_TAIL])
