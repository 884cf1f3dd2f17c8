"""``create_app(settings)``: the FastAPI app of ``tempflex serve`` (routes, auth, limits, streaming).

Routes: ``GET /`` (the web page), ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions`` (JSON, or
server-sent ``chat.completion.chunk`` events ending with ``data: [DONE]`` when ``stream`` is true), and
``GET /examples`` + ``GET /examples/{name}`` (the sample media the page offers). Every error is OpenAI error JSON.
"""

from __future__ import annotations

import hmac
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from tempflex.serve.completions import Completions
from tempflex.serve.engine import Engine
from tempflex.serve.errors import APIError
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

    add_error_handlers(app)

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

    service = Completions(engine, settings, name, decoder)

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        authorize(request)
        return await service.handle(request)

    if settings.examples_dir is not None:
        add_examples(app, Path(settings.examples_dir))
    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error as OpenAI error JSON, unknown routes included."""

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
