"""The chat-completions request as vLLM and SGLang take it, validated into pydantic models.

Content parts: ``text``, ``image_url`` and ``video_url`` (a ``data:`` or ``file://`` URL; a video may carry
``num_frames`` or ``fps``, SGLang's form). Multiple choice: ``structured_outputs: {"choice": [...]}`` (vLLM) or
``guided_choice`` (vLLM's older field). ``mm_processor_kwargs: {num_frames, fps, budget, reduce}`` (vLLM's field)
sets the frames and the token budget. Fields OpenAI clients send that do not change the answer (``user``,
penalties at their defaults, ...) are accepted and ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tempflex.serve.errors import APIError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MediaURL(_Strict):
    url: str
    detail: str | None = None  # OpenAI's image detail level; every image is read at native resolution anyway
    num_frames: int | None = Field(None, ge=1)  # videos only: frames to sample uniformly
    fps: float | None = Field(None, gt=0)  # videos only: frames per second to sample (capped by --max-frames)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: MediaURL | str

    @property
    def media(self) -> MediaURL:
        return MediaURL(url=self.image_url) if isinstance(self.image_url, str) else self.image_url


class VideoPart(_Strict):
    type: Literal["video_url"]
    video_url: MediaURL | str

    @property
    def media(self) -> MediaURL:
        return MediaURL(url=self.video_url) if isinstance(self.video_url, str) else self.video_url


Part = Annotated[TextPart | ImagePart | VideoPart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. "name"

    role: Literal["system", "developer", "user", "assistant"]  # "developer": OpenAI's newer name for system
    content: str | list[Part]

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        return "system" if value == "developer" else value


class StructuredOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice: list[str] = Field(min_length=2)


class ProcessorKwargs(_Strict):
    num_frames: int | None = Field(None, ge=1)
    fps: float | None = Field(None, gt=0)
    budget: int | None = Field(None, ge=1)  # most tokens the video may cost the LLM (see docs/budget.md)
    reduce: str = "flux"  # reducer under a budget, options after commas ("drop,threshold=0.8")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)  # vLLM's: generate at least this many tokens before <eos> may end the answer
    temperature: float | None = Field(None, ge=0, le=2)  # None or 0: greedy
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)  # one answer per request
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    structured_outputs: StructuredOutputs | None = None
    guided_choice: list[str] | None = Field(None, min_length=2)
    mm_processor_kwargs: ProcessorKwargs | None = None
    return_frames: bool = False  # tempflex extension: small JPEG thumbnails of the frames used (the web page)

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops or None

    @property
    def choice(self) -> list[str] | None:
        if self.structured_outputs is not None:
            return self.structured_outputs.choice
        return self.guided_choice

    @property
    def new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse_request(raw: bytes) -> ChatRequest:
    """The validated request, or 400 (not JSON) / 422 (not a chat request) naming the first problem."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise APIError(400, f"malformed JSON body: {err}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_json")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as err:
        first = max(err.errors(), key=lambda e: len(e["loc"]))  # the deepest: inside the union branch that fits
        where = ".".join(str(p) for p in first["loc"] if isinstance(p, int) or p.isidentifier())
        raise APIError(422, f"{where}: {first['msg']}", param=where, code="invalid_value") from None
    if request.structured_outputs is not None and request.guided_choice is not None:
        raise APIError(422, "give structured_outputs.choice or guided_choice, not both", param="guided_choice")
    return request
