"""``tempflex serve``: the OpenAI-compatible video chat server and its web page (see docs/serve.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import user_errors


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)


def serve_cmd(
    model: Annotated[Path | None, typer.Option("--model", help="A saved TempFlex model (default: tempflex-tiny).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    served_model_name: Annotated[str | None, typer.Option("--served-model-name", help="The model id clients send (default: the model directory's name).")] = None,
    allowed_media_path: Annotated[list[Path] | None, typer.Option("--allowed-media-path", help="A directory file:// media may come from (checked on the real path); repeat for more.")] = None,
    allowed_media_domains: Annotated[list[str] | None, typer.Option("--allowed-media-domains", help="A host http(s) media may come from; repeat for more (none by default).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="TEMPFLEX_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1/*.")] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body (413 beyond).")] = 64 << 20,
    max_media_items: Annotated[int, typer.Option("--max-media-items", help="Images + videos per request.")] = 8,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Frames sampled per video.")] = 64,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Width x height of an image or video frame.")] = 4096 * 4096,
    max_video_seconds: Annotated[float, typer.Option("--max-video-seconds", help="Longest video.")] = 600.0,
    max_video_bytes: Annotated[int, typer.Option("--max-video-bytes", help="Largest video file or data URL (413 beyond).")] = 256 << 20,
    max_decode_seconds: Annotated[float, typer.Option("--max-decode-seconds", help="Wall time to decode one request's media.")] = 30.0,
    request_timeout: Annotated[float, typer.Option("--request-timeout", help="Wall time of a request, queueing included (504 beyond).")] = 120.0,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Requests inside the server at once (429 with Retry-After beyond).")] = 64,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Compatible requests scored in one forward pass.")] = 8,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Largest max_tokens a request may ask for.")] = 1024,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default: torch's).")] = None,
    examples: Annotated[Path | None, typer.Option("--examples", help="A directory of sample media (+ questions.jsonl) the web page offers.")] = None,
) -> None:  # fmt: skip
    """Serve a model over the OpenAI chat-completions API, with a web page at /."""
    import uvicorn
    from transformers.utils import logging as transformers_logging

    from tempflex.serve import ServeSettings, create_app

    with user_errors():
        settings = ServeSettings(
            model=model, model_name=served_model_name, host=host, port=port, api_key=api_key,
            allowed_media_paths=tuple(allowed_media_path or ()), allowed_media_domains=tuple(allowed_media_domains or ()),
            max_body_bytes=max_body_bytes, max_media_items=max_media_items, max_frames=max_frames,
            max_pixels=max_pixels, max_video_seconds=max_video_seconds, max_video_bytes=max_video_bytes,
            max_decode_seconds=max_decode_seconds, request_timeout=request_timeout, max_queue=max_queue,
            max_batch=max_batch, max_tokens=max_tokens, threads=threads, examples_dir=examples,
        )
        if examples is not None and not examples.is_dir():
            raise ValueError(f"--examples {examples} is not a directory")
        transformers_logging.disable_progress_bar()
        typer.echo(f"loading {model or 'tempflex-tiny'} ...", err=True)
        app = create_app(settings)
    typer.echo(f"serving {app.state.model_name} on http://{host}:{port} (page at /, API at /v1)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
