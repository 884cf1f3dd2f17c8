"""Training throughput of the four tiny recipes and the memory effect of gradient checkpointing, side by side.

Each run is a fresh subprocess (``tempflex train``) so that its peak resident memory (``ru_maxrss`` of the child,
which includes the interpreter and libraries) belongs to that run alone. Two throughputs: "step" counts the
samples of all logged steps over the time spent inside the optimizer steps (forward, backward, update), "end to
end" the same samples over the wall time of the whole process (start-up, model building, data decoding, checkpoint
and final saves included). Gradient checkpointing is compared on tiny stage 4 (everything trains),
on a wider model with 8 frames so activations matter: on CPU the saving shows in RSS only as far as activations
dominate the footprint, so the ratio is small for a width-32 model and grows with width and sequence length.

    python benchmarks/bench_train.py --workdir /tmp/bench_train --out benchmarks/results/train.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("stage1_align", "stage2_image_sft", "stage3_tff_align", "stage4_video_sft")


def _throughput(log: Path) -> tuple[float, int, float]:
    """(samples, steps, seconds inside optimizer steps) from a run's log.jsonl."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    samples = sum(r["samples_per_s"] * r["seconds"] for r in records)
    return samples, len(records), sum(r["seconds"] for r in records)


def run(workdir: Path, recipe: str, *overrides: str) -> dict:
    """One training run in a fresh process: samples, steps, step seconds and wall seconds."""
    cmd = [sys.executable, "-m", "tempflex", "train", str(ROOT / "recipes" / "tiny" / f"{recipe}.yaml"),
           "log.every=1", "log.progress=false", "resume=null", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    samples, steps, seconds = _throughput(workdir / "runs" / "tiny" / recipe.split("_")[0] / "log.jsonl")
    return {"samples": samples, "steps": steps, "step_s": seconds, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_train"))
    parser.add_argument("--out", type=Path, help="also write the tables, with the command, to this markdown file")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "tempflex", "data", "make-tiny", "runs/tiny/data"], cwd=args.workdir,
                   check=True, capture_output=True)
    lines = ["| tiny recipe | steps | samples | step samples/s | end-to-end samples/s | wall s |",
             "|---|---:|---:|---:|---:|---:|"]
    for stage in STAGES:
        r = run(args.workdir, stage)
        lines.append(f"| {stage} | {r['steps']} | {r['samples']:.0f} | {r['samples'] / r['step_s']:.1f} | "
                     f"{r['samples'] / r['wall_s']:.2f} | {r['wall_s']:.1f} |")
    # gradient checkpointing: a wider, deeper tiny model on stage-4 data with more frames, off then on; RSS is a
    # process-lifetime maximum, so each run is measured alone under its own wrapper process
    gc_rows = ["| gradient checkpointing | step samples/s | peak RSS MiB |", "|---|---:|---:|"]
    rounds = [{flag: measure_rss(args.workdir, flag) for flag in ("false", "true")} for _ in range(2)]
    stats = {flag: {"rss": max(r[flag]["rss"] for r in rounds),  # alternate runs; best speed of each
                    "samples_per_s": max(r[flag]["samples_per_s"] for r in rounds)} for flag in ("false", "true")}
    for flag, st in stats.items():
        gc_rows.append(f"| {flag} | {st['samples_per_s']:.2f} | {st['rss']:.0f} |")
    saving = 1 - stats["true"]["rss"] / stats["false"]["rss"]
    slowdown = stats["false"]["samples_per_s"] / stats["true"]["samples_per_s"]
    gc_rows.append(f"\ncheckpointing on / off: {saving:.0%} less peak RSS, {slowdown:.2f}x the step time")
    table = "\n".join(lines + [""] + gc_rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "## Training: tiny recipes and gradient checkpointing (`benchmarks/bench_train.py`)\n\n"
            "```\n.venv/bin/python benchmarks/bench_train.py --out benchmarks/results/train.md\n```\n\n"
            "2 CPU cores, fp32, one process per run.\n\n" + table + "\n"
        )


def measure_rss(workdir: Path, checkpointing: str) -> dict:
    """Peak RSS of one child alone: a wrapper process reports its own child's ru_maxrss."""
    out = f"runs/gc_{checkpointing}"
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    cmd = [sys.executable, "-c", code, sys.executable, "-m", "tempflex", "train",
           str(ROOT / "recipes" / "tiny" / "stage4_video_sft.yaml"), "log.every=1", "log.progress=false",
           "resume=null", f"output_dir={out}", f"gradient_checkpointing={checkpointing}", "model.from_pretrained=null",
           "model.tiny.tokenizer=runs/tiny/data/tokenizer", "model.tiny.width=256", "model.tiny.layers=6",
           "data.max_length=8192", "data.num_frames=12", "schedule.max_steps=4"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    samples, _, seconds = _throughput(workdir / out / "log.jsonl")
    return {"rss": int(proc.stdout.split()[-1]) / 1024, "samples_per_s": samples / seconds}


if __name__ == "__main__":
    main()
