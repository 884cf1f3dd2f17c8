"""Data synthesis: grid extraction per minute of video, and videos per minute against concurrency.

How to run (about 2 minutes on 2 CPU cores, plus about 15 s to encode the clip the first time):
    .venv/bin/python benchmarks/bench_synth.py --out benchmarks/results/synth.md
    .venv/bin/python benchmarks/bench_synth.py --quick        # 20-s clip, fewer videos, latency 0.2 s

(a) Frames at 1 fps stitched into 3x3 grids of 448-px tiles (what ``tempflex synth`` sends), from a 60-s 640x360
25-fps H.264 clip, timed from opening the file:
- ours: ``video_frame_grids(path, fps=1.0, tile_width=448)``, split into its decode (``load_video``) and stitch
  (``frame_grids``) halves; the JPEG + base64 encoding of the grids (``prompt.image_part``) is timed apart;
- naive: decode every frame with PyAV, keep the first frame at or after each k + 0.5 s, resize and paste with PIL.
(b) The real pipeline (``tempflex.synth.pipeline.Runner`` with the real ``openai`` client) against the scripted
OpenAI-compatible server of ``tests/synth_server.py`` on loopback, every answer valid and delayed by
``--latency`` seconds; videos are copies of one 10-s clip (decoding, stitching and JPEG encoding are done per
video, as in a real run). Videos per minute at concurrency 1, 2, 4, 8, 16.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import av
import numpy as np
from PIL import Image

from tempflex.video import load_video
from tempflex.synth.grids import frame_grids, video_frame_grids

TILE = 448  # tile width of the synthesis pipeline (SynthOptions.tile_width)
CONCURRENCY = (1, 2, 4, 8, 16)


# ---------------------------------------------------------------------------------------------------- clips
def make_clip(path: Path, seconds: int, width: int = 640, height: int = 360, fps: int = 25) -> Path:
    """A moving random texture with a crossing box (every frame differs), libx264 veryfast, cached by name."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    texture = (
        rng.integers(0, 256, (height // 8 + 64, width // 8 + 64, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    )
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            shift = (2 * i) % 512
            frame = np.ascontiguousarray(
                texture[shift % 64 : shift % 64 + height, shift % 64 : shift % 64 + width]
            )
            x = (5 * i) % (width - 40)
            frame[40:80, x : x + 40] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------- (a) grids
def naive_grids(path: Path, tile: int = TILE) -> list[Image.Image]:
    """Decode every frame, keep one per second (first at or after k + 0.5 s), resize, paste 3x3 with PIL."""
    kept: list[Image.Image] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= len(kept) + 0.5:
                kept.append(frame.to_image())
    grids = []
    for first in range(0, len(kept), 9):
        tiles = [
            im.resize((tile, round(im.height * tile / im.width)), Image.Resampling.BICUBIC)
            for im in kept[first : first + 9]
        ]
        w, h = tiles[0].size
        grid = Image.new("RGB", (3 * w, 3 * h), (255, 255, 255))
        for k, im in enumerate(tiles):
            grid.paste(im, ((k % 3) * w, (k // 3) * h))
        grids.append(grid)
    return grids


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """(median seconds over ``repeats`` calls, last result)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_grids(clip: Path, seconds: int, repeats: int, prompt: ModuleType) -> list[str]:
    per_min = 60.0 / seconds
    total, grids = timed(lambda: video_frame_grids(clip, fps=1.0, tile_width=TILE), repeats)
    decode, video = timed(lambda: load_video(clip, fps=1.0), repeats)
    stitch, _ = timed(lambda: frame_grids(video.frames, video.timestamps, tile_width=TILE), repeats)
    encode, _ = timed(lambda: [prompt.image_part(g) for g in grids], repeats)
    naive, naive_out = timed(lambda: naive_grids(clip), repeats)
    assert len(naive_out) == len(grids), (len(naive_out), len(grids))
    share = decode / (decode + stitch)
    return [
        f"Clip: {seconds} s, 640x360, 25 fps, H.264; {len(grids)} grids of 3x3 {TILE}-px tiles; median of {repeats} each.",
        "",
        "| reader | s per minute of video | decode | stitch | time vs ours |",
        "|---|---|---|---|---|",
        f"| ours: video_frame_grids | {total * per_min:.3f} | {share:.0%} | {1 - share:.0%} | 1.00x |",
        f"| naive: decode all + PIL | {naive * per_min:.3f} | | | {naive / total:.2f}x |",
        "",
        f"JPEG + base64 of the grids (prompt.image_part): {encode * per_min:.3f} s per minute of video.",
    ]


# ---------------------------------------------------------------------------------------------------- (b) pipeline
def load_server_module(repo: Path) -> ModuleType:
    """``tests/synth_server.py`` by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synth_server", repo / "tests" / "synth_server.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError("tests/synth_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth_server"] = module
    spec.loader.exec_module(module)
    return module


def run_pipeline(server_mod: ModuleType, clip: Path, videos: int, concurrency: int, latency: float) -> float:
    """Seconds for ``videos`` videos through the real Runner against the scripted server; all must be accepted."""
    from tempflex.synth.client import RetryPolicy, make_client
    from tempflex.synth.manifest import VideoItem
    from tempflex.synth.pipeline import Runner, Summary, SynthOptions
    from tempflex.synth.store import Store

    answer = server_mod.Reply(server_mod.valid_answer("bench"), delay=latency)
    items = [
        VideoItem(id=f"v{i:04d}", video=str(clip), source="bench", title=f"bench {i}") for i in range(videos)
    ]
    with server_mod.ScriptedServer(default=answer) as server, tempfile.TemporaryDirectory() as out:
        client = make_client(server.base_url, "sk-bench", "bench-model", timeout=60.0, policy=RetryPolicy())
        runner = Runner(client, Store(out), SynthOptions(concurrency=concurrency))
        start = time.perf_counter()
        summary = runner.run(items, Summary())
        elapsed = time.perf_counter() - start
    if summary.accepted != videos:
        raise RuntimeError(f"expected {videos} accepted, got: {summary.line()}")
    return elapsed


def bench_pipeline(
    repo: Path, clip: Path, latency: float, videos_at: Callable[[int], int], repeats: int
) -> list[str]:
    server_mod = load_server_module(repo)
    run_pipeline(server_mod, clip, 2, 2, 0.0)  # warm-up: imports, first connection
    rows = []
    for c in CONCURRENCY:
        n = videos_at(c)
        best = min(run_pipeline(server_mod, clip, n, c, latency) for _ in range(repeats))
        rows.append((c, n, n / best * 60.0))
    base = rows[0][2]
    lines = [
        f"Server latency {latency} s per request; each video: a 10-s 640x360 clip -> 2 grids -> 1 request.",
        f"Ideal with no CPU cost: {60 / latency:.0f} videos/min per concurrent request; best of {repeats} runs.",
        "",
        "| concurrency | videos | videos / min | vs concurrency 1 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {n} | {vpm:.1f} | {vpm / base:.2f}x |" for c, n, vpm in rows]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the results (markdown) here")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tempflex-bench")
    parser.add_argument("--latency", type=float, help="injected server latency, s (default 0.5; --quick 0.2)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    args.cache.mkdir(parents=True, exist_ok=True)
    seconds = 20 if args.quick else 60
    latency = args.latency if args.latency is not None else (0.2 if args.quick else 0.5)
    long_clip = make_clip(args.cache / f"synth_640x360_{seconds}s.mp4", seconds)
    short_clip = make_clip(args.cache / "synth_640x360_10s.mp4", 10)
    from tempflex.synth import prompt

    grid_lines = bench_grids(long_clip, seconds, 1 if args.quick else 5, prompt)
    per_level = (lambda c: max(4, c)) if args.quick else (lambda c: max(12, 2 * c))
    pipe_lines = bench_pipeline(repo, short_clip, latency, per_level, 1 if args.quick else 2)
    command = "    .venv/bin/python benchmarks/bench_synth.py" + (" --quick" if args.quick else "")
    text = "\n".join(
        ["# Synthesis benchmark", "", command, "", f"{os.cpu_count()} CPU cores.", "",
         "## (a) Frame extraction and grid stitching", "", *grid_lines, "",
         "## (b) Videos per minute against concurrency (real pipeline, scripted loopback server)", "", *pipe_lines]
    )  # fmt: skip
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
