"""``tempflex synth``: TempFlex-2M style captions and QA pairs from videos through an OpenAI-compatible server.

Thin over ``tempflex.synth.run``; errors a user can fix (bad manifest, missing key, unreachable server, bad key or
model) are one line on stderr with exit code 2; Ctrl-C exits 130 after writing what had finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tempflex.cli.common import ProgressBar, exit_interrupted, user_errors


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)
    app.command("synth-report")(synth_report_cmd)


def synth_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", help="JSONL or CSV: video, id?, title?, asr?, activities?, props?, summary?, source?")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards/, rejected.jsonl, train/); reruns resume.")],
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible API, e.g. https://api.openai.com/v1")],
    model: Annotated[str, typer.Option("--model", help="Model name, e.g. gpt-4o.")],
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Videos in flight.")] = 4,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="At most this many new videos.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the key.")] = "OPENAI_API_KEY",
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds per request.")] = 300.0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Requests per call, retries included.")] = 6,
    retry_rejected: Annotated[bool, typer.Option("--retry-rejected", help="Redo the videos of rejected.jsonl.")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Records per shard file.")] = 1000,
) -> None:  # fmt: skip
    """Write a description and 5 + 5 QA pairs per video (paper figure 6); resumable, validated, crash-safe."""
    from tempflex.synth.client import ApiError, RetryPolicy, make_client
    from tempflex.synth.manifest import load_manifest
    from tempflex.synth.pipeline import Summary, SynthOptions
    from tempflex.synth.run import run_synthesis

    with user_errors():
        items = load_manifest(manifest)
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(
                f"no API key: set the environment variable {api_key_env} (any value for a local server)"
            )
        options = SynthOptions(concurrency=concurrency, limit=limit, retry_rejected=retry_rejected)
        client = make_client(
            base_url, api_key, model, timeout=timeout, policy=RetryPolicy(max_attempts=max_attempts)
        )
        with ProgressBar("synth", status=True) as bar:

            def show(done: int, total: int, summary: Summary) -> None:
                bar(done, total, f"ok {summary.accepted} / rejected {summary.rejected}")

            try:
                summary = run_synthesis(items, out, client, options, shard_size=shard_size, progress=show)
            except ApiError as exc:
                raise ValueError(f"{exc} ({base_url})") from None
    typer.echo(summary.line())
    if summary.interrupted:
        exit_interrupted()


def synth_report_cmd(
    out: Annotated[Path, typer.Argument(help="The output folder of `tempflex synth`.")],
    dedup: Annotated[bool, typer.Option("--dedup", help="First find near-duplicate videos and repeated questions "
                                        "(decodes every video at 1 fps) and leave them out of train/.")] = False,
    price_prompt: Annotated[float | None, typer.Option("--price-prompt", help="Price per 1M prompt tokens.")] = None,
    price_completion: Annotated[float | None, typer.Option("--price-completion",
                                                           help="Price per 1M completion tokens.")] = None,
) -> None:  # fmt: skip
    """Statistics per question dimension and per source (report.md, report.json, report.png), token usage and
    cost; with --dedup, de-duplication first (dedup.json) and a fresh training export without the duplicates."""
    from tempflex.synth.run import refresh_report

    with user_errors():
        if (price_prompt is None) != (price_completion is None):
            raise ValueError("give both --price-prompt and --price-completion, or neither")
        prices = None if price_prompt is None else {"prompt": price_prompt, "completion": price_completion}
        result = refresh_report(out, dedup=dedup, prices=prices)
    if result.dedup is not None:
        typer.echo(f"dedup: {result.dedup}")
    typer.echo(f"report: {', '.join(str(p) for p in result.paths.values())}")
