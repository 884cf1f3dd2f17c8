"""`tempflex serve` against `tempflex ask`: the same multiple-choice questions about the example videos, answered
by separate `tempflex ask` processes (each loads the model) and by one server (the model loaded once), side by side.

Measures, with the default model tempflex-tiny: per `ask` process its wall time; per server run at concurrency 1, 4
and 16 (threads of the openai client, each sending its next request when the last one is answered) requests/s and
p50/p95 latency; and the same server with ``--max-batch 1`` at the highest concurrency, which is what batching
(option scoring of concurrent requests in one forward pass) gives. Answers are checked against the `ask` answers.

    .venv/bin/python benchmarks/bench_serve.py --ask-runs 3 --requests 16

Writes benchmarks/results/serve.json and serve.md. The machine is shared: figures are wall times of one run.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import track

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
RESULTS = ROOT / "benchmarks" / "results"


def questions(limit: int | None = None) -> list[dict]:
    items = [json.loads(x) for x in (EXAMPLES / "questions.jsonl").read_text().splitlines() if x.strip()]
    return items[:limit] if limit else items


def ask_process(item: dict, model: str | None) -> tuple[float, str]:
    """(wall seconds, answer) of one `tempflex ask` process."""
    command = [sys.executable, "-m", "tempflex", "ask", item["question"], "--video", str(EXAMPLES / item["video"]),
               "--json"] + [arg for o in item["options"] for arg in ("-o", o)]
    if model:
        command += ["--model", model]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)["choice"]


class Server:
    """A `python -m tempflex.serve` process on a free loopback port."""

    def __init__(self, model: str | None, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        command = [sys.executable, "-m", "tempflex.serve", "--port", str(self.port), "--allowed-media-path",
                   str(EXAMPLES), "--max-queue", "256", *args] + (["--model", model] if model else [])
        start = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    self.model = json.loads(response.read())["model"]
                    break
            except OSError:
                time.sleep(0.5)
        self.start_seconds = time.perf_counter() - start

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def one_request(client, model: str, item: dict) -> tuple[float, str, int]:
    """(latency s, answer, batch size) of one choice request."""
    start = time.perf_counter()
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "file://" + str(EXAMPLES / item["video"])}},
            {"type": "text", "text": item["question"]}]}],
        extra_body={"structured_outputs": {"choice": item["options"]}})
    return time.perf_counter() - start, reply.choices[0].message.content, reply.model_extra["tempflex"]["batch_size"]


def load_run(server: Server, items: list[dict], concurrency: int, requests: int) -> dict:
    """``requests`` requests (cycling ``items``) from ``concurrency`` client threads."""
    import openai

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="none", max_retries=0,
                           timeout=600)
    work = [items[i % len(items)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(lambda item: one_request(client, server.model, item), work))
    wall = time.perf_counter() - start
    latencies = sorted(d[0] for d in done)
    return {"concurrency": concurrency, "requests": requests, "wall": wall, "rps": requests / wall,
            "p50": statistics.median(latencies), "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "mean_batch": statistics.mean(d[2] for d in done),
            "answers": {item["video"]: answer for item, (_, answer, _) in zip(work, done)}}


def serve_runs(model: str | None, items: list[dict], levels: list[int], requests: int, *args: str) -> dict:
    server = Server(model, *args)
    try:
        one_request(__import__("openai").OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="none"),
                    server.model, items[0])  # warm-up: first-call allocations
        runs = [load_run(server, items, c, requests) for c in track(levels, description=f"serve {' '.join(args)}")]
    finally:
        server.close()
    return {"start_seconds": server.start_seconds, "runs": runs}


def report(result: dict) -> str:
    ask = result["ask"]
    lines = ["| setup | concurrency | requests | requests/s | p50 s | p95 s | mean batch | p50 vs `ask` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             f"| `tempflex ask` process | 1 | {len(ask['seconds'])} | {1 / statistics.mean(ask['seconds']):.3f} | "
             f"{ask['p50']:.1f} | {max(ask['seconds']):.1f} | 1 | 1.0x |"]
    for name, block in (("serve", result["serve"]), ("serve --max-batch 1", result.get("serve_nobatch"))):
        for run in (block or {}).get("runs", []):
            lines.append(f"| `{name}` | {run['concurrency']} | {run['requests']} | {run['rps']:.3f} | "
                         f"{run['p50']:.2f} | {run['p95']:.2f} | {run['mean_batch']:.1f} | "
                         f"{ask['p50'] / run['p50']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a saved model (default: tempflex-tiny)")
    parser.add_argument("--questions", type=int, default=10, help="example questions the requests cycle over")
    parser.add_argument("--ask-runs", type=int, default=3, help="`tempflex ask` processes (each loads the model)")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--skip-nobatch", action="store_true", help="do not measure --max-batch 1")
    args = parser.parse_args()
    items = questions(args.questions)
    ask = [ask_process(item, args.model) for item in track(items[: args.ask_runs], description="tempflex ask")]
    result = {"ask": {"seconds": [s for s, _ in ask], "p50": statistics.median(s for s, _ in ask),
                      "answers": {item["video"]: a for item, (_, a) in zip(items, ask)}}}
    result["serve"] = serve_runs(args.model, items, args.concurrency, args.requests)
    if not args.skip_nobatch:
        result["serve_nobatch"] = serve_runs(args.model, items, [max(args.concurrency)], args.requests,
                                             "--max-batch", "1")
    served = result["serve"]["runs"][0]["answers"]
    result["agreement"] = {v: served.get(v) == a for v, a in result["ask"]["answers"].items()}
    table = report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "serve.md").write_text(f"# bench_serve\n\n{table}\n\nserver start (model load): "
                                      f"{result['serve']['start_seconds']:.1f} s; answers equal to `ask`'s: "
                                      f"{sum(result['agreement'].values())}/{len(result['agreement'])}\n")
    console = Console()
    console.print(table)
    console.print(f"server start {result['serve']['start_seconds']:.1f} s; answers equal to ask's: "
                  f"{sum(result['agreement'].values())}/{len(result['agreement'])}")


if __name__ == "__main__":
    main()
