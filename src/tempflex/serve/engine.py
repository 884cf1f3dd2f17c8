"""``Engine``: the loaded model behind a queue, one worker thread, batching what can share a forward pass.

Requests enter through ``admit`` (at most ``max_queue`` inside the server at once: beyond that 429 with
Retry-After), then ``submit`` a ``Job``. The worker takes the oldest job and, when it is an option-scoring job
without a token budget, every other waiting job that scores options with the same shared answer prefix (up to
``max_batch``): they run as one left-padded forward pass (``scoring.score_batch``). Free generation and
budgeted jobs run one at a time. A job whose deadline passed while it waited is answered 504 without running.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import torch

from tempflex.serve import scoring
from tempflex.serve.errors import APIError
from tempflex.serve.jobs import Job
from tempflex.serve.settings import ServeSettings


class Ticket:
    """An admitted request's place; ``release`` (idempotent) lets the next one in."""

    def __init__(self, leave: Callable[[], None]) -> None:
        self._leave = leave
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._leave()


class Engine:
    """Owns the loaded ``Asker`` and the worker thread (see the module docstring)."""

    def __init__(self, asker, settings: ServeSettings, *, start: bool = True) -> None:
        self.asker = asker
        self.settings = settings
        self._jobs: deque[Job] = deque()
        self._ready = threading.Condition()
        self._inside = 0  # admitted requests not yet finished
        self._closed = False
        self.batches: list[int] = []  # sizes of the batches run so far (for /health and the benchmark)
        self._worker = threading.Thread(target=self._run, name="tempflex-engine", daemon=True)
        if start:
            self._worker.start()

    def start(self) -> None:
        """Start the worker (an engine built with ``start=False`` only queues until then)."""
        self._worker.start()

    @property
    def default_frames(self) -> int:
        return self.asker.default_frames

    def admit(self) -> Ticket:
        """Count a request in until its ticket is released; 429 when ``max_queue`` are inside, 503 once closed."""
        with self._ready:
            if self._closed:
                raise APIError(503, "the server is shutting down", code="server_closed",
                               retry_after=self.settings.retry_after)
            if self._inside >= self.settings.max_queue:
                raise APIError(429, f"{self._inside} requests are already inside (--max-queue "
                               f"{self.settings.max_queue}); retry later", code="queue_full",
                               retry_after=self.settings.retry_after)
            self._inside += 1
        return Ticket(self._leave)

    def _leave(self) -> None:
        with self._ready:
            self._inside -= 1

    @property
    def queued(self) -> int:
        return self._inside

    def submit(self, job: Job) -> Future:
        with self._ready:
            if self._closed:
                raise APIError(503, "the server is shutting down", code="server_closed",
                               retry_after=self.settings.retry_after)
            self._jobs.append(job)
            self._ready.notify()
        return job.future

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._worker.is_alive():
            self._worker.join(timeout=30)

    # -- the worker --------------------------------------------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        """The oldest job and the waiting jobs that can share its forward pass."""
        with self._ready:
            while not self._jobs and not self._closed:
                self._ready.wait()
            if not self._jobs:
                return None
            first = self._jobs.popleft()
            batch = [first]
            if first.batch_key is not None:
                for job in list(self._jobs):
                    if len(batch) >= self.settings.max_batch:
                        break
                    if job.batch_key == first.batch_key:
                        self._jobs.remove(job)
                        batch.append(job)
            return batch

    def _run(self) -> None:
        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        while (batch := self._take()) is not None:
            now = time.monotonic()
            live = []
            for job in batch:
                if job.cancelled.is_set():
                    job.future.set_exception(APIError(499, "the client went away", code="cancelled"))
                elif now > job.deadline:
                    job.future.set_exception(self._timeout())
                else:
                    live.append(job)
            if live:
                self._answer(live)

    def _answer(self, batch: list[Job]) -> None:
        try:
            with torch.inference_mode():
                if batch[0].options is not None:
                    results = scoring.score(self.asker, batch)
                else:
                    results = [scoring.generate(self.asker, batch[0])]
        except APIError as err:
            for job in batch:
                job.future.set_exception(err)
            return
        except (ValueError, TypeError) as err:  # a prompt the processor or pipeline refuses
            if len(batch) > 1:  # one bad prompt must not fail the others: answer each alone
                for job in batch:
                    self._answer([job])
                return
            batch[0].future.set_exception(APIError(400, str(err), code="invalid_request"))
            return
        except Exception as err:  # noqa: BLE001 - a bug must not kill the worker: a 500, and the server lives on
            for job in batch:
                job.future.set_exception(APIError(500, f"internal error: {type(err).__name__}: {err}",
                                                  code="internal_error"))
            return
        self.batches.append(len(batch))
        for job, result in zip(batch, results):
            if result is None:
                job.future.set_exception(self._timeout())
            else:
                job.future.set_result(result)

    def _timeout(self) -> APIError:
        return APIError(504, f"the request took longer than --request-timeout {self.settings.request_timeout:g} s",
                        code="request_timeout")
