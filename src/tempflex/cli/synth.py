"""``tempflex synth``: TempFlex-2M style captions and QA pairs from videos through an OpenAI-compatible server.

Thin over ``tempflex.synth.run`` and ``tempflex.synth.merge`` (``tempflex synth-merge``); errors a user can fix
(bad manifest, missing key, unreachable server, bad key or model, a bad shard or a missing Ray) are one line on
stderr with exit code 2; Ctrl-C exits 130 after writing what had finished.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tempflex.cli.common import ProgressBar, exit_interrupted, user_errors

if TYPE_CHECKING:
    from tempflex.synth.client import RetryPolicy
    from tempflex.synth.pipeline import Summary, SynthOptions
    from tempflex.synth.sharding import ShardSpec


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)
    app.command("synth-report")(synth_report_cmd)
    app.command("synth-merge")(synth_merge_cmd)


def synth_cmd(
    manifest: Annotated[Path, typer.Option("--manifest", help="JSONL or CSV: video, id?, title?, asr?, activities?, props?, summary?, source?")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (shards/, rejected.jsonl, train/); reruns resume.")],
    base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible API, e.g. https://api.openai.com/v1")],
    model: Annotated[str, typer.Option("--model", help="Model name, e.g. gpt-4o.")],
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Videos in flight (requests, with --engine ray).")] = 4,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="At most this many new videos.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the key.")] = "OPENAI_API_KEY",
    timeout: Annotated[float, typer.Option("--timeout", min=0.01, help="Seconds per request.")] = 300.0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Requests per call, retries included.")] = 6,
    retry_rejected: Annotated[bool, typer.Option("--retry-rejected", help="Redo the videos of rejected.jsonl.")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Records per shard file.")] = 1000,
    num_shards: Annotated[int, typer.Option("--num-shards", help="Split the manifest into K shards by a stable hash of the video id (one per machine).")] = 1,
    shard_index: Annotated[int, typer.Option("--shard-index", help="This machine's shard, 0 <= i < K; each shard into its own --out.")] = 0,
    engine: Annotated[str, typer.Option("--engine", help="local (threads in this process) or ray (Ray Data; pip install 'tempflex[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="With --engine ray: a running Ray cluster, e.g. auto.")] = None,
) -> None:  # fmt: skip
    """Write a description and 5 + 5 QA pairs per video (paper figure 6); resumable, validated, crash-safe."""
    from tempflex.synth.client import RetryPolicy
    from tempflex.synth.pipeline import SynthOptions
    from tempflex.synth.sharding import ShardSpec

    with user_errors():
        shard = ShardSpec(num_shards, shard_index)
        options = SynthOptions(concurrency=concurrency, limit=limit, retry_rejected=retry_rejected)
        summary = _run(manifest, out, base_url, model, api_key_env, timeout, RetryPolicy(max_attempts=max_attempts),
                       options, shard_size, shard, engine, address)
    typer.echo(summary.line())
    if summary.interrupted:
        exit_interrupted()


def _run(manifest: Path, out: Path, base_url: str, model: str, api_key_env: str, timeout: float, policy: RetryPolicy,
         options: SynthOptions, shard_size: int, shard: ShardSpec, engine_name: str, address: str | None) -> Summary:
    from tempflex.synth.client import ApiError, make_client
    from tempflex.synth.engines import make_engine
    from tempflex.synth.manifest import load_manifest
    from tempflex.synth.run import run_synthesis

    engine = make_engine(engine_name, address=address)  # first: a missing Ray is said before anything else
    items = load_manifest(manifest)
    api_key = os.environ.get(api_key_env)
    if not api_key:
        raise ValueError(f"no API key: set the environment variable {api_key_env} (any value for a local server)")
    client = make_client(base_url, api_key, model, timeout=timeout, policy=policy)
    with ProgressBar("synth", status=True) as bar:

        def show(done: int, total: int, summary: Summary) -> None:
            bar(done, total, f"ok {summary.accepted} / rejected {summary.rejected}")

        try:
            return run_synthesis(items, out, client, options, shard_size=shard_size, progress=show, shard=shard,
                                 engine=engine)
        except ApiError as exc:
            raise ValueError(f"{exc} ({base_url})") from None


def synth_merge_cmd(
    folders: Annotated[list[Path], typer.Argument(help="Output folders of `tempflex synth` (the shards of one split, or independent runs).")],
    out: Annotated[Path, typer.Option("--out", help="New folder for the merged output; a rerun of the same merge finishes it.")],
    dedup: Annotated[bool, typer.Option("--dedup", help="Also drop near-duplicate videos and repeated questions across the inputs (decodes every video at 1 fps).")] = False,
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Records per shard file.")] = 1000,
) -> None:  # fmt: skip
    """Join shard folders into one: records de-duplicated by video id, training export and report; refuses
    overlapping shards and folders made with different settings."""
    from tempflex.synth.merge import merge_outputs

    with user_errors():
        result = merge_outputs(folders, out, shard_size=shard_size, dedup=dedup)
    if result.missing_shards:
        typer.echo(f"warning: shards {', '.join(map(str, result.missing_shards))} of {result.num_shards} were not "
                   "given; merge again with them into the same --out when they are done", err=True)
    if result.dedup is not None:
        typer.echo(f"dedup: {result.dedup}")
    typer.echo(result.line())


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
