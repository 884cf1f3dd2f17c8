"""``POST /v1/chat/completions``: admit, read and validate, decode the media, queue the job, answer as JSON or as
server-sent ``chat.completion.chunk`` events."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from tempflex.serve import chat, responses
from tempflex.serve.engine import Engine, Ticket
from tempflex.serve.errors import APIError
from tempflex.serve.jobs import Job
from tempflex.serve.media import MediaItem
from tempflex.serve.protocol import ChatRequest, parse_request
from tempflex.serve.settings import ServeSettings

GRACE = 5.0  # seconds past the deadline to wait for a forward pass that cannot be interrupted


class Completions:
    """The chat-completions route over one engine."""

    def __init__(self, engine: Engine, settings: ServeSettings, model_name: str, decoder: Executor) -> None:
        self.engine = engine
        self.settings = settings
        self.name = model_name
        self.decoder = decoder  # threads that fetch and decode media

    async def handle(self, request: Request):
        body = parse_request(await read_body(request, self.settings.max_body_bytes))
        if body.model != self.name:
            raise APIError(404, f"the model {body.model!r} does not exist: this server serves {self.name!r}",
                           param="model", code="model_not_found")
        ticket = self.engine.admit()
        streaming = False
        try:
            deadline = time.monotonic() + self.settings.request_timeout
            job, media = await self.prepare(body, deadline)
            if body.stream:
                response, streaming = self.stream(body, job, media, ticket), True
                return response
            return await self.answer(body, job, media)
        finally:
            if not streaming:  # a stream releases its ticket when it ends
                ticket.release()

    async def prepare(self, body: ChatRequest, deadline: float) -> tuple[Job, list[MediaItem]]:
        """Decode the media in the decoder pool (bounded by the deadline), then build the job."""
        specs = chat.media_specs(body, self.settings)
        loop = asyncio.get_running_loop()
        decoding = loop.run_in_executor(self.decoder, chat.decode_media, specs, self.settings,
                                        self.engine.default_frames)
        try:
            media = await asyncio.wait_for(decoding, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise self.timeout() from None
        try:
            return chat.build_job(body, media, self.engine.asker.processor, self.settings, deadline), media
        except ValueError as err:  # options that one token cannot tell apart, a bad budget spec, ...
            raise APIError(400, str(err), code="invalid_request") from None

    def timeout(self) -> APIError:
        return APIError(504, f"the request took longer than --request-timeout {self.settings.request_timeout:g} s",
                        code="request_timeout")

    async def answer(self, body: ChatRequest, job: Job, media: list[MediaItem]) -> dict:
        future = asyncio.wrap_future(self.engine.submit(job))
        try:
            result = await asyncio.wait_for(future, timeout=max(0.0, job.deadline - time.monotonic()) + GRACE)
        except asyncio.TimeoutError:
            job.cancelled.set()
            raise self.timeout() from None
        thumbs = await asyncio.to_thread(responses.thumbnails, result, media) if body.return_frames else None
        return responses.completion(responses.completion_id(), self.name, result, media, body.logprobs, thumbs)

    def stream(self, body: ChatRequest, job: Job, media: list[MediaItem], ticket: Ticket) -> StreamingResponse:
        def close() -> None:  # also when the events never started: the client left at once
            job.cancelled.set()
            ticket.release()

        return StreamingResponse(self.events(body, job, media, ticket), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"}, background=BackgroundTask(close))

    async def events(self, body: ChatRequest, job: Job, media: list[MediaItem], ticket: Ticket):
        """Role, text deltas as the worker produces them, the finish chunk, usage, ``[DONE]``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        job.emit = lambda delta: loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))
        cid, name = responses.completion_id(), self.name
        finished = False
        try:
            future = self.engine.submit(job)
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(queue.put_nowait, ("done", f)))
            yield responses.chunk(cid, name, {"role": "assistant", "content": ""})
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield responses.chunk(cid, name, {"content": value})
                    continue
                for event in self.last_events(cid, body, job, media, value):
                    yield event
                break
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                job.cancelled.set()  # the client went away: stop generating for it
            ticket.release()

    def last_events(self, cid: str, body: ChatRequest, job: Job, media: list[MediaItem], future) -> list[str]:
        err = future.exception()
        if err is not None:
            failure = err if isinstance(err, APIError) else APIError(500, f"internal error: {err}")
            return [responses.sse(failure.body())]
        result = future.result()
        events = [responses.chunk(cid, self.name, {"content": result.text})] if job.options is not None else []
        thumbs = responses.thumbnails(result, media) if body.return_frames else None
        events.append(responses.chunk(cid, self.name, {}, result.finish_reason,
                                      tempflex=responses.extension(result, media, thumbs)))
        if body.stream_options is not None and body.stream_options.include_usage:
            events.append(responses.sse({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                                         "model": self.name, "choices": [], "usage": responses.usage(result)}))
        return events


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body has {declared} bytes, more than --max-body-bytes {limit}",
                       code="body_too_large")
    chunks, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise APIError(413, f"the request body is larger than --max-body-bytes {limit}", code="body_too_large")
        chunks.append(piece)
    return b"".join(chunks)
