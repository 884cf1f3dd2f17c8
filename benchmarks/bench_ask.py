"""`tempflex ask` on this CPU: seconds per stage (decode, processor, vision encoder, TFF, merger, word bridge, LLM
prefill, generation) for 16 and 64 frames of a real video, with the default model tempflex-tiny (Gemma3-270M frozen
underneath).

Side by side, the baseline is the bare LLM (the same Gemma3-270M) prefilling and generating from a text-only prompt
of the same length: the ratio says what the visual path (decode + processor + encoder + TFF + merger + bridge)
adds to answering.

    .venv/bin/python benchmarks/bench_ask.py --repeats 5

Writes benchmarks/results/ask.md. Medians over the repeats after one warm-up; generation is forced to
``--new-tokens`` tokens (no early stop) so that runs compare.

``--processes`` measures whole commands instead, each in a fresh process, side by side: the CLI's own start-up
(``tempflex tokens --size 64x64``), a cold first ``tempflex ask`` (an empty ``TEMPFLEX_CACHE``: the wheel LLM is
converted and cached) and a warm ``ask`` (the cache filled), against the goals cold <= 15x and warm <= 3x the start-up:

    nice -n 10 .venv/bin/python benchmarks/bench_ask.py --processes --repeats 3

Writes benchmarks/results/ask_process.md. Start-up and warm runs alternate so that both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tempflex.ask import Asker, load_media, timed
from tempflex.samples import sample_videos

ROOT = Path(__file__).resolve().parents[1]


def run_once(asker: Asker, video: Path, frames: int, new_tokens: int) -> dict[str, float]:
    start = time.perf_counter()
    media = load_media(video=video, frames=frames)
    processor, model = asker.processor, asker.model
    text = processor.apply_chat_template([{"role": "user", "content": "<video>\nWhat happens in the video?"}])
    begin = time.perf_counter()
    inputs = processor(text, videos=[media.data])
    process = time.perf_counter() - begin  # resize, patchify, tokenise
    with torch.inference_mode(), timed(model) as timer:
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    total = time.perf_counter() - start
    return {"decode": media.seconds, "process": process, **timer.seconds, "total": total,
            "tokens": float(inputs["input_ids"].shape[1]),
            "visual": float((inputs["input_ids"] == processor.video_token_id).sum())}


def run_baseline(asker: Asker, length: int, new_tokens: int) -> dict[str, float]:
    """The bare LLM on a text prompt of ``length`` tokens."""
    llm = asker.model.language_model
    ids = torch.randint(1000, 2000, (1, length))
    with torch.inference_mode(), timed(asker.model) as timer:
        start = time.perf_counter()
        # the hooks sit on asker.model.language_model, so the bare LLM's calls are timed the same way
        llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                     min_new_tokens=new_tokens, do_sample=False)
        total = time.perf_counter() - start
    return {**timer.seconds, "total": total}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}


GOALS = {"cold": 15.0, "warm": 3.0}  # most seconds a cold / warm ask may take, in start-ups
QUESTION = ["What happens in the video?", "-o", "a rabbit wakes up", "-o", "a car drives by"]


def run_command(args: list[str], cache: Path) -> float:
    """Seconds a ``tempflex`` command takes in a fresh process with ``TEMPFLEX_CACHE=cache``."""
    tempflex = Path(sys.executable).with_name("tempflex")
    start = time.perf_counter()
    subprocess.run([str(tempflex), *args], env={**os.environ, "TEMPFLEX_CACHE": str(cache)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def processes(repeats: int) -> None:
    """Start-up, cold ask and warm ask as fresh processes, side by side; ratios against ``GOALS``."""
    video = next(v for v in sample_videos() if v.name == "bigbuckbunny.mp4")
    startup_args, ask_args = ["tokens", "--size", "64x64"], ["ask", *QUESTION[:1], "--video", str(video), *QUESTION[1:]]
    with tempfile.TemporaryDirectory(prefix="tempflex-cache-") as cache:
        startup = [run_command(startup_args, Path(cache))]
        cold = run_command(ask_args, Path(cache))  # the empty cache: converts and caches the wheel LLM
        warm = []
        for _ in range(repeats):
            startup.append(run_command(startup_args, Path(cache)))
            warm.append(run_command(ask_args, Path(cache)))
    base, warm_s = statistics.median(startup), statistics.median(warm)
    rows = [("CLI start-up, `tempflex tokens --size 64x64`", base, 1.0, None),
            ("cold first `tempflex ask` (empty TEMPFLEX_CACHE)", cold, cold / base, GOALS["cold"]),
            ("warm `tempflex ask`", warm_s, warm_s / base, GOALS["warm"])]
    lines = [(f"Fresh processes on bigbuckbunny.mp4, a two-option question; start-up median of {len(startup)}, warm "
              f"median of {repeats}, cold once; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
              f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."), "",
             "| command | seconds | x start-up | goal | met |", "|---|---|---|---|---|"]
    for name, seconds, ratio, goal in rows:
        met = "" if goal is None else ("yes" if ratio <= goal else "no")
        lines.append(f"| {name} | {seconds:.1f} | {ratio:.2f} | {'' if goal is None else f'<= {goal:g}x'} | {met} |")
    lines.append("")
    lines.append(f"runs (s): start-up {[round(x, 1) for x in startup]}, warm {[round(x, 1) for x in warm]}")
    out = ROOT / "benchmarks/results/ask_process.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--frames", default="16,64")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--processes", action="store_true", help="start-up, cold and warm ask as fresh processes")
    args = parser.parse_args()
    if args.processes:
        processes(args.repeats)
        return
    video = next(v for v in sample_videos() if v.name == "bigbuckbunny.mp4")
    start = time.perf_counter()
    asker = Asker(args.model)
    load = time.perf_counter() - start
    rows = []
    for frames in (int(f) for f in args.frames.split(",")):
        run_once(asker, video, frames, args.new_tokens)  # warm-up
        ours = median([run_once(asker, video, frames, args.new_tokens) for _ in range(args.repeats)])
        run_baseline(asker, int(ours["tokens"]), args.new_tokens)
        base = median([run_baseline(asker, int(ours["tokens"]), args.new_tokens) for _ in range(args.repeats)])
        rows.append((frames, ours, base))
        print(frames, {k: round(v, 3) for k, v in ours.items()}, {k: round(v, 3) for k, v in base.items()})
    lines = [
        (f"`ask` on bigbuckbunny.mp4 (1280x720, 5.3 s), model load {load:.1f} s (once per process), "
         f"{args.new_tokens} generated tokens, median of {args.repeats}, torch threads {torch.get_num_threads()}."),
        "",
        ("| frames | visual tokens | prompt tokens | decode s | process s | vision s | TFF s | merger s | bridge s "
         "| prefill s | generate s | total s | bare LLM, same prompt length: prefill s / generate s / total s "
         "| total ratio ask / bare LLM |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for frames, o, b in rows:
        lines.append(
            f"| {frames} | {o['visual']:.0f} | {o['tokens']:.0f} | {o['decode']:.3f} | {o['process']:.3f} | "
            f"{o['vision']:.3f} | "
            f"{o.get('tff', 0):.3f} | {o['merger']:.3f} | {o.get('bridge', 0):.3f} | {o['prefill']:.3f} | "
            f"{o['generate']:.3f} | {o['total']:.3f} "
            f"| {b['prefill']:.3f} / {b['generate']:.3f} / {b['total']:.3f} | {o['total'] / b['total']:.2f} |")
    out = ROOT / "benchmarks/results/ask.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
