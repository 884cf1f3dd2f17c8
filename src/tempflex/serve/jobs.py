"""``Job`` and ``Result``: one request's work as the engine queues it, and what the model made of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from tempflex.serve.generation import Sampling
from tempflex.serve.media import MediaItem


@dataclass
class Job:
    """One request's work: a rendered chat prompt with its media, and how to answer."""

    text: str  # the chat-template rendering, with <image>/<video> placeholders
    media: list[MediaItem]  # in placeholder order
    sampling: Sampling
    deadline: float  # time.monotonic() after which the request has failed
    options: list[str] | None = None  # score these instead of generating
    answers: object | None = None  # tempflex.answers.AnswerTokens of the options
    budget: dict | None = None  # a BudgetSpec dict: the video goes through the budget pipeline
    prompt: str = ""  # under a budget: the user turn (the pipeline applies the template itself)
    query: str = ""  # under a budget: the bare question relevance scoring asks about
    emit: Callable[[str], None] | None = None  # streaming: called with each text delta, from the worker thread
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)

    @property
    def batch_key(self) -> tuple | None:
        """Jobs with equal keys can share one forward pass; None: runs alone."""
        if self.options is None or self.budget is not None:
            return None
        return ("options", tuple(self.answers.lead))


@dataclass
class Result:
    """What a job produced."""

    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    visual_tokens: int
    choice: str | None = None
    option_logprobs: dict[str, float] | None = None  # log-softmax over the options' first tokens
    token_logprob: float | None = None  # the chosen option's token under the whole vocabulary
    frames: list[dict] = field(default_factory=list)  # [{"index", "time", "tokens"}] per frame that reached the LLM
    budget: dict | None = None  # what the budget pipeline spent
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (shared by a batch)
    batch_size: int = 1
