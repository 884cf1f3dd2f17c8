"""Seconds of the model's own segment relevance (``segment_relevance``) per video: one pass per segment against the
batched scoring, side by side on the same videos.

Shapes: S segments (16 of one frame for date / f2c / bvllm, 4 of four frames for ata).

Ways, each over the same probe videos and questions, in turn per video so that a change of machine load hits all:

- ``loop``: one ``segment_relevance`` call per segment: one bridge read and one LLM forward each;
- ``previous``: what the code did before the bridge read the segments in one pass: one call, one bridge read per
  segment (``bridged`` in a loop, put in for this way only), LLM forwards of 8 segments;
- ``batched-8``: one call, the bridge reading every segment in one pass, LLM forwards of 8 segments;
- ``batched``: one call, the bridge in one pass, one LLM forward of all segments (the default).

Reported: seconds per video (median over videos, after one warm-up video), the ratio to ``loop``, and the largest
difference of any score from the loop's (the parity a test also checks).

    nice -n 10 .venv/bin/python benchmarks/budget_relevance.py --videos 8

Writes benchmarks/results/budget_relevance.json and .md (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from tempflex.probes.evaluate import read_split
from tempflex.video import load_video

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {"per-frame (date, f2c, bvllm)": 1, "4-frame segments (ata)": 4}  # name -> frames per segment
WAYS = {"loop": None, "previous": 8, "batched-8": 8, "batched": 64}  # name -> LLM batch; None: a call a segment


def one_read_a_segment(model, parts, prompts):
    from tempflex.budget.prompt import bridged

    return [bridged(model, part, ids) for part, ids in zip(parts, prompts)]


def score(model, processor, tokens, segments, question: str, way: str) -> tuple[torch.Tensor, float]:
    from tempflex.budget import relevance, segment_relevance

    batch = WAYS[way]
    start = time.perf_counter()
    if way == "previous":
        batched, relevance.bridged_many = relevance.bridged_many, one_read_a_segment
        try:
            out = segment_relevance(model, processor, tokens, segments, question, batch_size=batch)
        finally:
            relevance.bridged_many = batched
    elif batch is None:
        out = torch.cat([segment_relevance(model, processor, tokens, [s], question) for s in segments])
    else:
        out = segment_relevance(model, processor, tokens, segments, question, batch_size=batch)
    return out, time.perf_counter() - start


def measure(asker, data: Path, records: list[dict], frames: int) -> list[dict]:
    from tempflex.budget.pipeline import encode_clip
    from tempflex.budget.scores import split

    seconds = {(layout, way): [] for layout in LAYOUTS for way in WAYS}
    worst = {layout: 0.0 for layout in LAYOUTS}
    for i, record in enumerate(records):
        tokens = encode_clip(asker.model, asker.processor, load_video(data / record["video"], num_frames=frames))
        for layout, size in LAYOUTS.items():
            segments = split(tokens.frames, -(-tokens.frames // size))
            ref = None
            for way in WAYS:
                out, took = score(asker.model, asker.processor, tokens, segments, record["question"], way)
                ref = out if ref is None else ref
                worst[layout] = max(worst[layout], float((out - ref).abs().max()))
                if i:  # the first video warms up
                    seconds[(layout, way)].append(took)
        print(f"video {i + 1}/{len(records)}", file=sys.stderr, flush=True)
    rows = []
    for layout in LAYOUTS:
        base = statistics.median(seconds[(layout, "loop")])
        for way in WAYS:
            median = statistics.median(seconds[(layout, way)])
            rows.append({"segments": layout, "way": way, "seconds_median": median, "speedup": base / median,
                         "max_abs_diff": worst[layout], "videos": len(seconds[(layout, way)])})
    return rows


def markdown(rows: list[dict], command: str, threads: int) -> str:
    note = (f"Default model, {rows[0]['videos']} probe videos of 16 frames (after one warm-up), torch threads "
            f"{threads}, nice 10, the 2 cores shared with other jobs. Seconds per video: median.")
    lines = ["```", command, "```", "", note, "",
             "| segments | way | s per video | speed-up vs loop | max abs score diff vs loop |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['segments']} | {r['way']} | {r['seconds_median']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


@torch.inference_mode()
def main() -> None:
    from tempflex.ask import DEFAULT_MODEL, Asker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a saved TempFlex model dir")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/probes-seed1", help="a probe set with test.jsonl")
    parser.add_argument("--videos", type=int, default=8, help="test questions (the first is a warm-up)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/budget_relevance")
    args = parser.parse_args()
    if args.videos < 2:
        parser.error(f"--videos must be >= 2 (the first warms up), got {args.videos}")
    command = "nice -n 10 .venv/bin/python benchmarks/budget_relevance.py " + shlex.join(sys.argv[1:])
    asker = Asker(args.model, threads=args.threads)
    rows = measure(asker, args.data, read_split(args.data, "test", args.videos), args.frames)
    text = markdown(rows, command, torch.get_num_threads())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
