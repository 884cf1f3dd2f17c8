"""``create_app(settings)``: the FastAPI app of ``tempflex serve`` (routes, auth, limits, streaming).

Routes: ``GET /`` (the web page), ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or
server-sent ``chat.completion.chunk`` events ending with ``data: [DONE]`` when ``stream`` is true), and
``GET /examples`` + ``GET /examples/{name}`` (the sample media the page offers). Every error is OpenAI error JSON.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from tempflex.serve import chat, responses
from tempflex.serve.engine import Engine, Job, Ticket
from tempflex.serve.errors import APIError
from tempflex.serve.protocol import ChatRequest, parse_request
from tempflex.serve.settings import ServeSettings

STATIC = Path(__file__).parent / "static"
MEDIA_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".png", ".jpg", ".jpeg")
DECODE_THREADS = 8  # media decoded at once (PyAV and Pillow release the GIL)


def load_engine(settings: ServeSettings) -> Engine:
    """Load the model (the slow part: before the port opens) and start its worker."""
    from tempflex.ask import Asker

    return Engine(Asker(settings.model, threads=settings.threads), settings)


def create_app(settings: ServeSettings, engine: Engine | None = None):
    """The app; loads the model unless given a running ``engine``."""
    engine = engine or load_engine(settings)
    name = settings.model_name or engine.asker.model_dir.name
    decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="tempflex-decode")

    @asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()
        decoder.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="tempflex serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.engine, app.state.settings, app.state.model_name = engine, settings, name

    @app.exception_handler(APIError)
    async def api_error(_request, err: APIError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers())

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        message = f"no route {request.method} {request.url.path}" if err.status_code in (404, 405) else err.detail
        return await api_error(request, APIError(err.status_code, message, code="not_found"))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, err: RequestValidationError):
        return await api_error(request, APIError(422, str(err.errors()[0].get("msg")), code="invalid_value"))

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or wrong API key: send Authorization: Bearer <key>", code="invalid_api_key")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": name, "inside": engine.queued, "batches_run": len(engine.batches),
                "largest_batch": max(engine.batches, default=0)}

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tempflex",
                                             "max_model_len": None}]}

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        authorize(request)
        body = parse_request(await read_body(request, settings.max_body_bytes))
        if body.model != name:
            raise APIError(404, f"the model {body.model!r} does not exist: this server serves {name!r}",
                           param="model", code="model_not_found")
        ticket = engine.admit()
        streaming = False
        try:
            deadline = time.monotonic() + settings.request_timeout
            job, media = await prepare(body, deadline)
            if body.stream:
                response, streaming = stream(body, job, media, ticket), True
                return response
            return await answer(body, job, media)
        finally:
            if not streaming:  # a stream releases its ticket when it ends
                ticket.release()

    async def prepare(body: ChatRequest, deadline: float) -> tuple[Job, list]:
        specs = chat.media_specs(body, settings)
        loop = asyncio.get_running_loop()
        decoding = loop.run_in_executor(decoder, chat.decode_media, specs, settings, engine.default_frames)
        try:
            media = await asyncio.wait_for(decoding, timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise engine_timeout() from None
        try:
            return chat.build_job(body, media, engine.asker.processor, settings, deadline), media
        except ValueError as err:  # options that one token cannot tell apart, a bad budget spec, ...
            raise APIError(400, str(err), code="invalid_request") from None

    def engine_timeout() -> APIError:
        return APIError(504, f"the request took longer than --request-timeout {settings.request_timeout:g} s",
                        code="request_timeout")

    async def answer(body: ChatRequest, job: Job, media: list):
        future = asyncio.wrap_future(engine.submit(job))
        try:
            result = await asyncio.wait_for(future, timeout=max(0.0, job.deadline - time.monotonic()) + 5.0)
        except asyncio.TimeoutError:
            job.cancelled.set()
            raise engine_timeout() from None
        thumbs = await asyncio.to_thread(responses.thumbnails, result, media) if body.return_frames else None
        return responses.completion(responses.completion_id(), name, result, media,
                                    body.logprobs or False, thumbs)

    def stream(body: ChatRequest, job: Job, media: list, ticket: Ticket):
        def close() -> None:  # also when the events never started: the client left at once
            job.cancelled.set()
            ticket.release()

        return StreamingResponse(events(body, job, media, ticket), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"}, background=BackgroundTask(close))

    async def events(body: ChatRequest, job: Job, media: list, ticket: Ticket):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        job.emit = lambda delta: loop.call_soon_threadsafe(queue.put_nowait, ("delta", delta))
        cid = responses.completion_id()
        finished = False
        try:
            future = engine.submit(job)
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(queue.put_nowait, ("done", f)))
            yield responses.chunk(cid, name, {"role": "assistant", "content": ""})
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield responses.chunk(cid, name, {"content": value})
                    continue
                err = value.exception()
                if err is not None:
                    failure = err if isinstance(err, APIError) else APIError(500, f"internal error: {err}")
                    yield responses.sse(failure.body())
                    break
                result = value.result()
                if job.options is not None:
                    yield responses.chunk(cid, name, {"content": result.text})
                thumbs = responses.thumbnails(result, media) if body.return_frames else None
                yield responses.chunk(cid, name, {}, result.finish_reason,
                                      tempflex=responses.extension(result, media, thumbs))
                if body.stream_options is not None and body.stream_options.include_usage:
                    yield responses.sse({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                                         "model": name, "choices": [], "usage": responses.usage(result)})
                break
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                job.cancelled.set()  # the client went away: stop generating for it
            ticket.release()

    if settings.examples_dir is not None:
        add_examples(app, Path(settings.examples_dir))
    return app


async def read_body(request, limit: int) -> bytes:
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


def list_examples(directory: Path) -> list[dict]:
    """The media files of ``directory``, with their question and options from questions.jsonl when given."""
    questions = {}
    listing = directory / "questions.jsonl"
    if listing.is_file():
        for line in listing.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                questions[record["video"]] = record
    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in MEDIA_SUFFIXES and path.is_file():
            record = questions.get(path.name, {})
            out.append({"name": path.name, "question": record.get("question", ""),
                        "options": record.get("options", [])})
    return out


def add_examples(app, directory: Path) -> None:
    examples = {e["name"]: e for e in list_examples(directory)}

    @app.get("/examples")
    async def examples_list():
        return {"examples": list(examples.values())}

    @app.get("/examples/{name}")
    async def example_file(name: str):
        if name not in examples:
            raise APIError(404, f"no example named {name!r}", code="not_found")
        return FileResponse(directory / name)
