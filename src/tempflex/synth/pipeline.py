"""One synthesis run: manifest items -> grids + prompt -> chat -> validated answer (one repair) -> store.

Threads: at most ``concurrency`` videos in flight (decoding, encoding and the request happen in the worker).
Ctrl-C (or ``stop``): nothing new is submitted, waits to retry end at once, in-flight answers that arrive are
still written, and the videos not written are simply redone by the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from tempflex.synth.client import ApiError, ChatClient, Interrupted
from tempflex.synth.manifest import VideoItem
from tempflex.synth.prompt import build_messages, repair_messages
from tempflex.synth.schema import AnswerError, parse_answer
from tempflex.synth.store import Store


@dataclass(frozen=True)
class SynthOptions:
    concurrency: int = 4  # videos in flight
    limit: int | None = None  # at most this many new videos this run
    retry_rejected: bool = False  # redo the videos of rejected.jsonl
    tile_width: int | None = (
        448  # grid tiles resized to this width (a 3x3 grid is 1344 px wide); None: as decoded
    )
    max_frames: int | None = None  # cap on 1-fps frames per video; None: the whole video

    def __post_init__(self) -> None:
        if self.concurrency < 1 or (self.limit is not None and self.limit < 0):
            raise ValueError("concurrency must be >= 1 and limit >= 0")


@dataclass
class Summary:
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0  # already done in an earlier run
    pending: int = 0  # left for the next run (stopped, or beyond --limit)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    interrupted: bool = False

    def line(self) -> str:
        tokens = self.prompt_tokens + self.completion_tokens
        text = (
            f"accepted {self.accepted}, rejected {self.rejected}, skipped {self.skipped}, pending {self.pending}; "
            f"tokens {tokens} (prompt {self.prompt_tokens}, completion {self.completion_tokens})"
        )
        return ("interrupted: " if self.interrupted else "") + text


@dataclass
class Outcome:
    item: VideoItem
    record: dict[str, Any]
    accepted: bool
    usage: tuple[int, int] = (0, 0)


@dataclass
class _Usage:
    prompt: int = 0
    completion: int = 0


def synthesize(item: VideoItem, client: ChatClient, options: SynthOptions) -> Outcome:
    """Frames -> grids -> request -> answer, with one repair request; an ``Outcome`` either way."""
    prepared = prepare(item, options)
    return prepared if isinstance(prepared, Outcome) else respond(item, prepared, client)


def prepare(item: VideoItem, options: SynthOptions) -> list[dict[str, Any]] | Outcome:
    """The chat request of one video (frames -> 3x3 grids -> messages), or its rejection if it cannot be decoded.

    CPU work only, no request: the Ray engine runs it as a map over CPUs, apart from ``respond``.
    """
    from tempflex.video import VideoDecodeError
    from tempflex.synth.grids import video_frame_grids

    try:
        grids = video_frame_grids(
            item.video, fps=1.0, max_frames=options.max_frames, tile_width=options.tile_width
        )
    except (VideoDecodeError, OSError, ValueError) as exc:
        return _rejection(item, f"video: {' '.join(str(exc).split())}", None, _Usage())
    return build_messages(item, grids)


def respond(item: VideoItem, messages: list[dict[str, Any]], client: ChatClient) -> Outcome:
    """Request -> validated answer, with one repair request; a fatal ``ApiError`` propagates."""
    usage, text = _Usage(), None
    try:
        text = _ask(client, messages, usage)
        try:
            answer = parse_answer(text)
        except AnswerError as first:
            text = _ask(client, repair_messages(messages, text, str(first)), usage)
            answer = parse_answer(text)
    except AnswerError as exc:
        return _rejection(item, f"invalid answer after repair: {exc}", text, usage)
    except ApiError as exc:
        if exc.fatal:
            raise
        return _rejection(item, f"api: {exc}", text, usage)
    record = {
        **_identity(item),
        "description": answer.description,
        "qa": answer.qa_records(),
        "usage": {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion},
        "model": client.model,
    }
    return Outcome(item, record, True, (usage.prompt, usage.completion))


def _ask(client: ChatClient, messages: list[dict[str, Any]], usage: _Usage) -> str | None:
    completion = client.complete(messages)
    usage.prompt += completion.prompt_tokens
    usage.completion += completion.completion_tokens
    return completion.text


def _identity(item: VideoItem) -> dict[str, Any]:
    return {"video_id": item.id, "video": item.video, "source": item.source}


def _rejection(item: VideoItem, reason: str, raw: str | None, usage: _Usage) -> Outcome:
    return Outcome(
        item, {**_identity(item), "reason": reason, "raw": raw}, False, (usage.prompt, usage.completion)
    )


def plan(
    items: Sequence[VideoItem], store: Store, options: SynthOptions, summary: Summary
) -> list[VideoItem]:
    """The videos of this run, in manifest order; counts the skipped ones and clears retried rejections."""
    done = store.accepted if options.retry_rejected else store.done
    todo = [item for item in items if item.id not in done]
    summary.skipped = len(items) - len(todo)
    if options.limit is not None:
        summary.pending = max(0, len(todo) - options.limit)
        todo = todo[: options.limit]
    if options.retry_rejected:
        store.forget_rejections({item.id for item in todo} & store.rejected)
    return todo


@dataclass
class Runner:
    """Runs ``todo`` through a thread pool; ``on_done(outcome)`` is called once per written video."""

    client: ChatClient
    store: Store
    options: SynthOptions
    on_done: Callable[[Outcome], None] = lambda outcome: None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, todo: Sequence[VideoItem], summary: Summary) -> Summary:
        self.client.stop = self.stop
        queue = list(reversed(todo))
        with ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="synth") as pool:
            in_flight: set[Future[Outcome]] = set()
            try:
                while queue or in_flight:
                    while queue and len(in_flight) < self.options.concurrency and not self.stop.is_set():
                        in_flight.add(pool.submit(synthesize, queue.pop(), self.client, self.options))
                    if not in_flight:
                        break
                    finished, in_flight = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self._finish(future, summary)
            except KeyboardInterrupt:
                self.stop.set()
                summary.interrupted = True
                for future in in_flight:  # answers already on their way are kept
                    self._finish(future, summary)
                in_flight = set()
        summary.pending += len(queue)
        return summary

    def _finish(self, future: Future[Outcome], summary: Summary) -> None:
        try:
            outcome = future.result()
        except Interrupted:
            summary.pending += 1
            return
        except ApiError:
            self.stop.set()  # fatal: let the others end, then re-raise
            raise
        if write_outcome(self.store, outcome, summary):
            self.on_done(outcome)


def write_outcome(store: Store, outcome: Outcome, summary: Summary) -> bool:
    """Append one finished video to the store and count it; False, writing nothing, if its id is already done
    (an engine that retries lost work, like Ray after a dead worker, may deliver a video twice)."""
    if outcome.item.id in store.done:
        return False
    (store.append_accepted if outcome.accepted else store.append_rejected)(outcome.record)
    summary.accepted += outcome.accepted
    summary.rejected += not outcome.accepted
    summary.prompt_tokens += outcome.usage[0]
    summary.completion_tokens += outcome.usage[1]
    return True
