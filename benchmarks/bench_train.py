"""Training throughput of the four tiny recipes and the memory effect of gradient checkpointing, side by side.

Each run is a fresh subprocess (``tempflex train``) so that its peak resident memory (``ru_maxrss`` of the child,
which includes the interpreter and libraries) belongs to that run alone. Samples/s is the median of the logged
steps after the first (warm-up) one. Gradient checkpointing is compared on tiny stage 4 (everything trains),
on a wider model with 8 frames so activations matter: on CPU the saving shows in RSS only as far as activations
dominate the footprint, so the ratio is small for a width-32 model and grows with width and sequence length.

    python benchmarks/bench_train.py --workdir /tmp/bench_train [--append-docs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("stage1_align", "stage2_image_sft", "stage3_tff_align", "stage4_video_sft")


def run(workdir: Path, recipe: str, *overrides: str) -> dict:
    """One training run in a fresh process: samples/s (median over steps 2..), peak RSS in MiB, wall seconds."""
    cmd = [sys.executable, "-m", "tempflex", "train", str(ROOT / "recipes" / "tiny" / f"{recipe}.yaml"),
           "log.every=1", "log.progress=false", "resume=null", *overrides]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    out = workdir / "runs" / "tiny" / recipe.split("_")[0]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records[1:]] or [records[0]["samples_per_s"]]
    return {"samples_per_s": statistics.median(rates), "steps": len(records),
            "seconds": sum(r["seconds"] for r in records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_train"))
    parser.add_argument("--append-docs", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "tempflex", "data", "make-tiny", "runs/tiny/data"], cwd=args.workdir,
                   check=True, capture_output=True)
    lines = ["| tiny recipe | steps | samples/s | train s |", "|---|---:|---:|---:|"]
    for stage in STAGES:
        r = run(args.workdir, stage)
        lines.append(f"| {stage} | {r['steps']} | {r['samples_per_s']:.1f} | {r['seconds']:.1f} |")
    # gradient checkpointing: a wider (128) and deeper (4 layers) tiny model on stage-4 data with 8 frames, off
    # then on; RSS is a process-lifetime maximum, so each run is measured alone under its own wrapper process
    gc_rows = ["| gradient checkpointing | samples/s | peak RSS MiB |", "|---|---:|---:|"]
    for flag in ("false", "true"):
        stats = measure_rss(args.workdir, flag)
        gc_rows.append(f"| {flag} | {stats['samples_per_s']:.1f} | {stats['rss']:.0f} |")
    table = "\n".join(lines + [""] + gc_rows)
    print(table)
    if args.append_docs:
        cmd = "python benchmarks/bench_train.py --append-docs"
        with open(ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as fh:
            fh.write(f"\n## Training: tiny recipes and gradient checkpointing\n\n`{cmd}` (2 CPU cores, fp32, one "
                     "process; peak RSS of a fresh `tempflex train` process, interpreter and libraries included)\n\n"
                     f"{table}\n")


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
           "model.tiny.tokenizer=runs/tiny/data/tokenizer", "model.tiny.width=128", "model.tiny.layers=4",
           "data.max_length=4096", "data.num_frames=8", "schedule.max_steps=4"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    records = [json.loads(line) for line in (workdir / out / "log.jsonl").read_text().splitlines()]
    rate = statistics.median(r["samples_per_s"] for r in records[1:])
    return {"rss": int(proc.stdout.split()[-1]) / 1024, "samples_per_s": rate}


if __name__ == "__main__":
    main()
