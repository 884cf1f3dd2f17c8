"""A validated chat request -> the media to decode, then the engine's ``Job``.

Each message renders to one text with ``<image>``/``<video>`` placeholders where its media parts stand (a
placeholder followed by text gets a newline, the layout ``tempflex ask`` and the probes use), and the chat
template joins the turns (system and multi-turn included). With ``structured_outputs.choice`` the last user turn
becomes the probes' multiple-choice prompt (``tempflex.probes.format``): the question, an "Options: ..." line and
the instruction, exactly as ``tempflex ask -o`` asks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tempflex.processing import placeholder_mismatch
from tempflex.serve.errors import APIError, bad_request
from tempflex.serve.generation import Sampling
from tempflex.serve.jobs import Job
from tempflex.serve.media import FrameRequest, MediaItem, decode_image, decode_video, media_file, source_name
from tempflex.serve.protocol import ChatRequest, ImagePart, TextPart, VideoPart
from tempflex.serve.settings import ServeSettings

DEFAULT_MAX_TOKENS = 128  # a free answer's length when the request names none
PLACEHOLDERS = {"image_url": "<image>", "video_url": "<video>"}


@dataclass(frozen=True)
class MediaSpec:
    """One media part to fetch and decode."""

    kind: str  # "image" or "video"
    url: str
    want: FrameRequest
    param: str  # where it is in the request, for error messages


def media_specs(request: ChatRequest, settings: ServeSettings) -> list[MediaSpec]:
    """The request's media parts in prompt order, checked against the count and frame limits (400)."""
    kwargs = request.mm_processor_kwargs
    specs = []
    for i, message in enumerate(request.messages):
        parts = [] if isinstance(message.content, str) else message.content
        videos = 0
        for j, part in enumerate(parts):
            if isinstance(part, TextPart):
                continue
            param = f"messages.{i}.content.{j}"
            if message.role != "user":
                raise bad_request(f"{param}: media go in user messages, not {message.role} ones", param=param)
            if isinstance(part, ImagePart):
                specs.append(MediaSpec("image", part.media.url, FrameRequest(), param))
                continue
            videos += 1
            if videos > 1:
                raise bad_request(f"messages.{i} has more than one video: give one video per message", param=param)
            specs.append(MediaSpec("video", part.media.url, _frames(part, kwargs, settings, param), param))
    if len(specs) > settings.max_media_items:
        raise bad_request(f"the request has {len(specs)} media items, more than --max-media-items "
                          f"{settings.max_media_items}", param="messages", code="limit_exceeded")
    return specs


def _frames(part: VideoPart, kwargs, settings: ServeSettings, param: str) -> FrameRequest:
    media = part.media
    if media.num_frames is not None or media.fps is not None:
        want = FrameRequest(media.num_frames, media.fps)
    elif kwargs is not None:
        want, param = FrameRequest(kwargs.num_frames, kwargs.fps), "mm_processor_kwargs.num_frames"
    else:
        want = FrameRequest()
    if want.num_frames is not None and want.num_frames > settings.max_frames:
        raise bad_request(f"num_frames {want.num_frames} is more than --max-frames {settings.max_frames}",
                          param=param, code="limit_exceeded")
    return want


def decode_media(specs: list[MediaSpec], settings: ServeSettings, default_frames: int) -> list[MediaItem]:
    """Fetch and decode every media item (blocking: run it in a thread); 422 past --max-decode-seconds."""
    start = time.perf_counter()
    items = []
    for spec in specs:
        name = source_name(spec.url)
        with media_file(spec.url, spec.kind, settings, spec.param) as path:
            if spec.kind == "image":
                items.append(decode_image(path, settings, spec.param, name))
            else:
                items.append(decode_video(path, settings, spec.want, spec.param, name, default_frames))
        if time.perf_counter() - start > settings.max_decode_seconds:
            raise APIError(422, f"decoding the media took longer than --max-decode-seconds "
                           f"{settings.max_decode_seconds:g}", param=spec.param, code="decode_timeout")
    return items


def render(content, options: list[str] | None = None) -> tuple[str, str]:
    """(the turn's text with placeholders, its bare text): media placeholders where the parts stand."""
    from tempflex.probes.format import format_question

    if isinstance(content, str):
        return (format_question(content, options) if options else content), content
    bare = "".join(p.text for p in content if isinstance(p, TextPart))
    if options:
        marks = "".join(PLACEHOLDERS[p.type] for p in content if not isinstance(p, TextPart))
        question = format_question(bare, options)
        return (marks + "\n" + question if marks else question), bare
    pieces: list[str] = []
    for part in content:
        piece = part.text if isinstance(part, TextPart) else PLACEHOLDERS[part.type]
        if isinstance(part, TextPart) and pieces and pieces[-1] in PLACEHOLDERS.values() and piece[:1] not in " \n":
            pieces.append("\n")
        pieces.append(piece)
    return "".join(pieces), bare


def build_job(request: ChatRequest, media: list[MediaItem], processor, settings: ServeSettings,
              deadline: float) -> Job:
    """The engine's job for a request whose media are decoded; 400 for what the model cannot take."""
    options = request.choice
    last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=None)
    if last_user is None:
        raise bad_request("the messages have no user turn", param="messages")
    turns, question = [], ""
    for i, message in enumerate(request.messages):
        text, bare = render(message.content, options if i == last_user else None)
        turns.append({"role": message.role, "content": text})
        question = bare if i == last_user else question
    if not question.strip():
        raise bad_request("the last user message has no text: ask a question", param=f"messages.{last_user}")
    job = Job(text="", media=media, sampling=_sampling(request, settings), deadline=deadline, options=options)
    if options is not None:
        from tempflex.answers import answer_tokens

        job.answers = answer_tokens(processor, options)  # ValueError (400) if options cannot be told apart
    kwargs = request.mm_processor_kwargs
    if kwargs is not None and kwargs.budget is not None:
        _budgeted(job, kwargs, turns, question)
    else:
        job.text = processor.apply_chat_template(turns)
        _check_placeholders(job.text, media)
    return job


def _check_placeholders(text: str, media: list[MediaItem]) -> None:
    """As many ``<image>``/``<video>`` placeholders as media parts (a text may not smuggle in its own)."""
    for kind, mark in (("image", "<image>"), ("video", "<video>")):
        given = sum(m.kind == kind for m in media)
        if text.count(mark) != given:
            raise bad_request(f"the prompt has {placeholder_mismatch(mark, text.count(mark), given)}: "
                              f"remove {mark} from the text, media go in {kind}_url parts", param="messages",
                              code="placeholder_mismatch")


def _budgeted(job: Job, kwargs, turns: list[dict], question: str) -> None:
    from tempflex.budget import BudgetSpec

    if len(turns) != 1 or len(job.media) != 1 or job.media[0].kind != "video":
        raise bad_request("a token budget takes one user message with one video", param="mm_processor_kwargs.budget")
    name, _, extra = kwargs.reduce.partition(",")
    spec = f"{name}:{kwargs.budget}" + (f",{extra}" if extra else "")
    job.budget = BudgetSpec.parse(spec).model_dump()  # BudgetError (a ValueError, 400) names a bad key
    job.prompt, job.query = turns[0]["content"], question.strip()


def _sampling(request: ChatRequest, settings: ServeSettings) -> Sampling:
    wanted = request.new_tokens or min(DEFAULT_MAX_TOKENS, settings.max_tokens)
    if wanted > settings.max_tokens:
        raise bad_request(f"max_tokens {wanted} is more than the server's --max-tokens {settings.max_tokens}",
                          param="max_tokens", code="limit_exceeded")
    if request.min_tokens > wanted:
        raise bad_request(f"min_tokens {request.min_tokens} is more than max_tokens {wanted}", param="min_tokens")
    if request.logprobs and request.choice is None:
        raise bad_request("logprobs come back for structured_outputs.choice only", param="logprobs")
    return Sampling(max_tokens=wanted, min_tokens=request.min_tokens, temperature=request.temperature or 0.0,
                    top_p=request.top_p or 1.0, stop=tuple(request.stop or ()), seed=request.seed)
