"""`tempflex serve` against `tempflex ask`: the same multiple-choice questions about the example videos, answered
by separate `tempflex ask` processes (each loads the model) and by a server (the model loaded once), side by side.

Measures, with the default model tempflex-tiny: per `ask` process its wall time; per server and concurrency level
(1, 4, 16 threads of the openai client, each sending its next request when the last one is answered) requests/s
and p50/p95 latency. Two servers run at once, one batching (option scoring of concurrent compatible requests in
one forward pass) and one with ``--max-batch 1``; every round runs each level on both, in alternating order, so
the load of a shared machine falls on both alike: their difference is what batching gives. Answers are checked
against the `ask` answers.

    .venv/bin/python benchmarks/bench_serve.py --ask-runs 3 --requests 16 --rounds 2

Writes benchmarks/results/serve.json and serve.md. Figures are wall times of one run.
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
    """A `python -m tempflex.serve` process on a free loopback port (``wait`` until it answers)."""

    def __init__(self, model: str | None, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.args = args
        command = [sys.executable, "-m", "tempflex.serve", "--port", str(self.port), "--allowed-media-path",
                   str(EXAMPLES), "--max-queue", "256", *args] + (["--model", model] if model else [])
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> None:
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    self.model = json.loads(response.read())["model"]
                    break
            except OSError:
                time.sleep(0.5)
        self.start_seconds = time.perf_counter() - self.started

    def client(self):
        import openai

        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", max_retries=0, timeout=900)

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
    client = server.client()
    work = [items[i % len(items)] for i in range(requests)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(lambda item: one_request(client, server.model, item), work))
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, "wall": wall, "latencies": [d[0] for d in done],
            "batches": [d[2] for d in done], "answers": {item["video"]: d[1] for item, d in zip(work, done)}}


def summary(bursts: list[dict]) -> dict:
    """One concurrency level over all rounds: requests/s over the summed wall time, latency percentiles."""
    latencies = sorted(x for b in bursts for x in b["latencies"])
    return {"concurrency": bursts[0]["concurrency"], "requests": len(latencies),
            "rps": len(latencies) / sum(b["wall"] for b in bursts), "p50": statistics.median(latencies),
            "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            "mean_batch": statistics.mean(x for b in bursts for x in b["batches"]), "answers": bursts[0]["answers"]}


def serve_runs(model: str | None, items: list[dict], levels: list[int], requests: int, rounds: int) -> dict:
    """Both servers (batching, and ``--max-batch 1``) up at once; each round runs every level on each, the
    servers' order alternating, so that the shared machine's load falls on both alike."""
    servers = {"serve": Server(model), "serve --max-batch 1": Server(model, "--max-batch", "1")}
    try:
        for server in servers.values():
            server.wait()
            one_request(server.client(), server.model, items[0])  # warm-up: first-call allocations
        bursts: dict[tuple[str, int], list[dict]] = {}
        plan = [(r, c) for r in range(rounds) for c in levels]
        for r, c in track(plan, description="serve rounds"):
            names = list(servers) if r % 2 == 0 else list(servers)[::-1]
            for name in names:
                bursts.setdefault((name, c), []).append(load_run(servers[name], items, c, requests))
    finally:
        for server in servers.values():
            server.close()
    return {name: {"start_seconds": server.start_seconds,
                   "runs": [summary(bursts[(name, c)]) for c in levels]} for name, server in servers.items()}


def report(result: dict) -> str:
    ask = result["ask"]
    lines = ["| setup | concurrency | requests | requests/s | p50 s | p95 s | mean batch | p50 vs `ask` |",
             "|---|---:|---:|---:|---:|---:|---:|---:|",
             (f"| `tempflex ask` process | 1 | {len(ask['seconds'])} | {1 / statistics.mean(ask['seconds']):.3f} | "
              f"{ask['p50']:.1f} | {max(ask['seconds']):.1f} | 1 | 1.0x |")]
    for name, block in result["serve"].items():
        for run in block["runs"]:
            lines.append(f"| `{name}` | {run['concurrency']} | {run['requests']} | {run['rps']:.3f} | "
                         f"{run['p50']:.2f} | {run['p95']:.2f} | {run['mean_batch']:.1f} | "
                         f"{ask['p50'] / run['p50']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a saved model (default: tempflex-tiny)")
    parser.add_argument("--questions", type=int, default=10, help="example questions the requests cycle over")
    parser.add_argument("--ask-runs", type=int, default=3, help="`tempflex ask` processes (each loads the model)")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the levels, both servers each round")
    args = parser.parse_args()
    items = questions(args.questions)
    ask = [ask_process(item, args.model) for item in track(items[: args.ask_runs], description="tempflex ask")]
    result = {"ask": {"seconds": [s for s, _ in ask], "p50": statistics.median(s for s, _ in ask),
                      "answers": {item["video"]: a for item, (_, a) in zip(items, ask)}}}
    result["serve"] = serve_runs(args.model, items, args.concurrency, args.requests, args.rounds)
    served = result["serve"]["serve"]["runs"][0]["answers"]
    result["agreement"] = {v: served.get(v) == a for v, a in result["ask"]["answers"].items()}
    table = report(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "serve.md").write_text(f"# bench_serve\n\n{table}\n\nserver start (model load): "
                                      f"{result['serve']['serve']['start_seconds']:.1f} s; answers equal to `ask`'s: "
                                      f"{sum(result['agreement'].values())}/{len(result['agreement'])}\n")
    console = Console()
    console.print(table)
    console.print(f"server start {result['serve']['serve']['start_seconds']:.1f} s; answers equal to ask's: "
                  f"{sum(result['agreement'].values())}/{len(result['agreement'])}")


if __name__ == "__main__":
    main()
