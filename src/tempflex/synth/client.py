"""Chat requests through the real ``openai`` client with our own retries (its built-in retries are off).

Retried: 429, 5xx, timeouts and connection errors, with exponential backoff and full jitter
(sleep ~ U(0, min(max_delay, base * 2**attempt))), or exactly the server's ``Retry-After`` seconds when it sends
one; at most ``max_attempts`` requests and ``max_elapsed`` seconds per call. Never retried: any other 4xx.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openai


class ApiError(RuntimeError):
    """A request that failed for good; ``fatal`` errors (auth, unknown model, unreachable) stop the whole run."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class MalformedReply(RuntimeError):
    """An HTTP 200 whose body is not a chat completion (cut-off JSON, empty, HTML): retried like a 5xx."""


class Interrupted(RuntimeError):
    """The run was asked to stop while this call waited to retry."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # requests per call, the first included
    base_delay: float = 1.0  # seconds; attempt k (0-based) waits up to base * 2**k
    max_delay: float = 60.0  # seconds; cap of one backoff (Retry-After is honoured up to max_elapsed)
    max_elapsed: float = 600.0  # seconds; give up when the next wait would pass this

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.max_elapsed <= 0:
            raise ValueError("retry policy: max_attempts >= 1, delays >= 0 and max_elapsed > 0")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass(frozen=True)
class Completion:
    text: str | None
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ChatClient:
    """``complete(messages)`` with retries; thread-safe (the ``openai`` client is)."""

    client: openai.OpenAI
    model: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stop: threading.Event = field(default_factory=threading.Event)  # set: no more retries
    rng: random.Random = field(default_factory=random.Random)
    sleep: Any = None  # (seconds) -> None; default waits on ``stop`` so Ctrl-C ends a wait at once

    def complete(self, messages: list[dict[str, Any]]) -> Completion:
        start = time.monotonic()
        error: Exception | None = None
        reason, attempt = "", 0
        for attempt in range(self.policy.max_attempts):
            try:
                return self._request(messages)
            except Exception as exc:
                error = exc
                delay, reason = _classify(exc)
                if delay is None:
                    raise ApiError(reason, fatal=_is_fatal(exc)) from exc
            wait = delay if delay >= 0 else self.policy.backoff(attempt, self.rng)
            last = attempt + 1 == self.policy.max_attempts
            if last or time.monotonic() - start + wait > self.policy.max_elapsed:
                break
            self._wait(wait)
        raise ApiError(
            f"{reason} (gave up after {attempt + 1} attempts)", fatal=_unreachable(error)
        ) from error

    def _request(self, messages: list[dict[str, Any]]) -> Completion:
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages)
        except ValueError as exc:  # the body did not parse as JSON (json.JSONDecodeError is a ValueError)
            raise MalformedReply(f"the reply is not valid JSON ({_short(str(exc))})") from exc
        if not hasattr(response, "choices"):  # openai hands back the raw text of a non-JSON body
            raise MalformedReply(f"the reply is not a chat completion: {_short(repr(response))}")
        usage = response.usage
        text = response.choices[0].message.content if response.choices else None
        return Completion(
            text=text,
            prompt_tokens=int(usage.prompt_tokens) if usage else 0,
            completion_tokens=int(usage.completion_tokens) if usage else 0,
        )

    def _wait(self, seconds: float) -> None:
        if self.stop.is_set():
            raise Interrupted("stopped")
        if self.sleep is not None:
            self.sleep(seconds)
        elif self.stop.wait(seconds):
            raise Interrupted("stopped")


def _classify(exc: Exception) -> tuple[float | None, str]:
    """(wait, reason): wait None = do not retry, -1 = backoff, >= 0 = the server's Retry-After."""
    import openai

    if isinstance(exc, MalformedReply):
        return -1, str(exc)
    if isinstance(exc, openai.APIResponseValidationError):
        return -1, f"the reply is not a chat completion ({_short(exc.message)})"
    if isinstance(exc, openai.APITimeoutError):
        return -1, "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return -1, f"cannot connect to the server ({exc.__cause__ or exc})"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        reason = f"HTTP {status}: {_short(exc.message)}"
        if status == 429 or status >= 500:
            retry_after = _retry_after(exc.response.headers.get("retry-after"))
            return (retry_after if retry_after is not None else -1), reason
        return None, reason
    raise exc


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare from APIs and falls back to backoff)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _is_fatal(exc: Exception) -> bool:
    """Errors that would fail every video alike: bad key, no permission, unknown model or route."""
    import openai

    return isinstance(exc, openai.APIStatusError) and exc.status_code in (401, 403, 404)


def _unreachable(exc: Exception | None) -> bool:
    import openai

    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


@dataclass(frozen=True)
class ClientSpec:
    """What builds a ``ChatClient``, picklable, so that worker processes (the Ray engine) build their own."""

    base_url: str
    api_key: str = field(repr=False)
    model: str
    timeout: float  # seconds per request
    policy: RetryPolicy

    @classmethod
    def of(cls, client: ChatClient) -> ClientSpec:
        """The spec of an existing client (its server, key, timeout, model and retry policy)."""
        inner = client.client
        timeout = inner.timeout if isinstance(inner.timeout, (int, float)) else inner.timeout.read
        return cls(str(inner.base_url), inner.api_key, client.model, float(timeout or 600.0), client.policy)

    def build(self) -> ChatClient:
        return make_client(self.base_url, self.api_key, self.model, timeout=self.timeout, policy=self.policy)


def make_client(
    base_url: str, api_key: str, model: str, *, timeout: float, policy: RetryPolicy
) -> ChatClient:
    """A ``ChatClient`` over ``openai.OpenAI`` with its own retries disabled."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout)
    return ChatClient(client=client, model=model, policy=policy)
