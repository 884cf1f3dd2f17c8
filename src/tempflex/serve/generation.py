"""Free generation for one request: sampling, stop strings, a deadline, and text deltas as tokens arrive.

``TextStream`` turns the token ids ``generate`` produces into text deltas: it decodes the whole answer each step
(so multi-byte characters come out whole), holds back the tail that could still become a stop string, and cuts
the answer at the first stop string. ``Halt`` is the stopping criterion that ends generation on a stop string,
on the request's deadline, or when the client has gone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """How to pick the answer's tokens (OpenAI's fields)."""

    max_tokens: int  # most new tokens
    min_tokens: int = 0  # fewest new tokens before <eos> may end the answer
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    seed: int | None = None  # makes sampling repeatable

    def generate_kwargs(self) -> dict:
        kwargs: dict = {"max_new_tokens": self.max_tokens, "min_new_tokens": self.min_tokens or None}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


class TextStream:
    """Token ids in, text deltas out (to ``emit``), stop strings applied; ``text`` is the answer so far."""

    def __init__(self, tokenizer, stop: tuple[str, ...], emit: Callable[[str], None] | None) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.emit = emit
        self.ids: list[int] = []
        self.text = ""  # the answer, cut at a stop string
        self.sent = 0  # characters of text already emitted
        self.stopped = False  # a stop string was seen
        self._prompt_seen = False
        self._hold = max((len(s) for s in stop), default=1) - 1  # characters that may start a stop string

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate() first passes the prompt
            self._prompt_seen = True
            return
        if self.stopped:
            return
        self.ids += value.reshape(-1).tolist()
        raw = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cut = min((i for i in (raw.find(s) for s in self.stop) if i >= 0), default=-1)  # stops match the raw text
        if cut >= 0:
            self.text, self.stopped = raw[:cut].lstrip(), True
            self._flush(len(self.text))
            return
        text = self.text = raw.lstrip()  # the answer starts at its first visible character
        if not text.endswith("\ufffd"):  # an unfinished multi-byte character waits for its next token
            self._flush(len(text) - self._hold)

    def end(self) -> None:
        if len(self.text.rstrip()) >= self.sent:  # trailing spaces go unless already sent
            self.text = self.text.rstrip()
        self._flush(len(self.text))

    def _flush(self, upto: int) -> None:
        if upto > self.sent:
            if self.emit is not None:
                self.emit(self.text[self.sent : upto])
            self.sent = upto


class Halt:
    """A stopping criterion: a stop string was seen, the deadline passed, or the request was cancelled."""

    def __init__(self, stream: TextStream, deadline: float, cancelled: threading.Event) -> None:
        self.stream = stream
        self.deadline = deadline
        self.cancelled = cancelled
        self.timed_out = False

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        self.timed_out = time.monotonic() > self.deadline
        stop = self.stream.stopped or self.timed_out or self.cancelled.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def seeded(seed: int | None) -> torch.Generator | None:
    """A CPU generator for a seeded draw (option sampling); None: torch's global one."""
    return None if seed is None else torch.Generator().manual_seed(seed)
