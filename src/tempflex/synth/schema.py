"""The model's answer: strict parsing and validation of the figure-6 JSON (a description, 5 + 5 QA pairs)."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tempflex.synth.prompt import DIMENSIONS

PAIRS_PER_KIND = 5  # figure 6: "Generate 5 vqa-type1 ... Generate 5 vqa-type2 question-answer pairs"
_CANONICAL = {name.casefold(): name for name in DIMENSIONS}
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


class AnswerError(ValueError):
    """An answer that is not the JSON we asked for; the message is fed back in the repair request."""


class QAPair(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    dimension: str = Field(min_length=1)

    @field_validator("dimension")
    @classmethod
    def _known_dimension(cls, value: str) -> str:
        canonical = _CANONICAL.get(value.casefold())
        if canonical is None:
            raise ValueError(f"unknown dimension {value!r}; use one of: {', '.join(DIMENSIONS)}")
        return canonical


class SynthAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    description: str = Field(min_length=1)
    vision_qa: list[QAPair] = Field(min_length=PAIRS_PER_KIND, max_length=PAIRS_PER_KIND)
    vision_text_qa: list[QAPair] = Field(min_length=PAIRS_PER_KIND, max_length=PAIRS_PER_KIND)

    def qa_records(self) -> list[dict[str, str]]:
        """The 10 pairs in output order, each tagged with its kind ("vision" or "vision_text")."""
        kinds: list[tuple[Literal["vision", "vision_text"], list[QAPair]]] = [
            ("vision", self.vision_qa),
            ("vision_text", self.vision_text_qa),
        ]
        return [{**pair.model_dump(), "kind": kind} for kind, pairs in kinds for pair in pairs]


def strip_fences(text: str) -> str:
    """The JSON inside a ```json ... ``` fence, or the text itself."""
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def parse_answer(text: str | None) -> SynthAnswer:
    """Parse and validate an answer; raises ``AnswerError`` with a one-line reason."""
    if not text or not text.strip():
        raise AnswerError("empty answer")
    try:
        data = json.loads(strip_fences(text))
    except json.JSONDecodeError as exc:
        raise AnswerError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise AnswerError("the answer must be a JSON object")
    try:
        return SynthAnswer.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:5]]
        raise AnswerError("; ".join(problems)) from None
