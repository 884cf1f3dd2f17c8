"""The multiple-choice prompt shared by the probes, their evaluation and ``tempflex ask --option``.

The answer is the option's text, not a letter: a frozen small LLM cannot map an answer to its letter (Gemma3-270M
picks the right letter 28 % of the time even when the prompt states the answer in words; chance is 27 %), while
the visual tokens can steer it to a word. Options should differ in their first word (scoring reads one token).
"""

from __future__ import annotations

LETTERS = "ABCDEFGH"  # option letters, in order
PROMPT_TAIL = "Answer with one of the options."


def format_question(question: str, options: list[str]) -> str:
    """``question``, the options on one line, then the instruction to answer with one of them."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options, got {len(options)}")
    return "\n".join([question.strip(), "Options: " + ", ".join(options) + ".", PROMPT_TAIL])
