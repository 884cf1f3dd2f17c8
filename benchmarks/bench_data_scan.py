"""The media size scan of a training mixture: every header read (no cache) against the cache beside the mixture.

Before training, ``ConversationDataset`` sizes each record from its media headers (``tempflex.train.lengths``).
This benchmark writes N records' media (half PNG photos, half 2-s H.264 clips, every record its own file: byte
copies of one photo and one clip, so each header is opened and parsed on its own) and times, side by side in one
run, alternately ``--repeats`` times:

- scan: ``media_sizes(paths, None)``, every header read, as every rank of every run did without the cache;
- build: the first run with the cache (every header read, the cache written atomically under its lock);
- cached: a later run or another rank (one ``stat`` per file against the cache, no header read).

The media were just written, so they are in the page cache: the scan figures are a lower bound for data on a
network file system.

    nice -n 10 python benchmarks/bench_data_scan.py --records 100000 --out benchmarks/results/data_scan.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tempflex.train.lengths import cache_for, media_sizes


def sample_files(folder: Path) -> tuple[bytes, bytes]:
    """The bytes of one 96x64 PNG photo and of one 2-s 128x72 25-fps H.264 clip."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(folder / "photo.png")
    with av.open(str(folder / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuv420p"
        for i in range(50):
            frame = np.full((72, 128, 3), (5 * i) % 256, dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return (folder / "photo.png").read_bytes(), (folder / "clip.mp4").read_bytes()


def write_media(folder: Path, records: int) -> list[Path]:
    photo, clip = sample_files(folder / "samples")
    media = folder / "media"
    media.mkdir(exist_ok=True)
    paths = []
    for i in range(records):
        path = media / (f"{i:06d}.mp4" if i % 2 else f"{i:06d}.png")
        path.write_bytes(clip if i % 2 else photo)
        paths.append(path)
    return paths


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(paths: list[Path], cache: Path, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"scan": [], "build": [], "cached": []}
    for _ in range(repeats):
        cache.unlink(missing_ok=True)
        times["scan"].append(timed(lambda: media_sizes(paths, None)))
        times["build"].append(timed(lambda: media_sizes(paths, cache)))
        times["cached"].append(timed(lambda: media_sizes(paths, cache)))
    return times


def report(times: dict[str, list[float]], records: int, cache: Path, args: argparse.Namespace) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    lines = [f"{records} records (half PNG, half H.264 clips), median of {args.repeats}, {os.cpu_count()} CPUs "
             f"shared with other jobs (load average {load:.1f}), cache {cache.stat().st_size / 1e6:.1f} MB", "",
             "| way | s | ms per file | vs cached |", "|---|---:|---:|---:|"]
    for key, label in (("scan", "scan: every header read (no cache)"), ("build", "build: first run, writes the cache"),
                       ("cached", "cached: later run or another rank")):
        lines.append(f"| {label} | {med[key]:.2f} | {1000 * med[key] / records:.3f} | "
                     f"{med[key] / med['cached']:.1f}x |")
    ranks = 8
    lines += ["", f"{ranks} ranks starting one run: {ranks} x scan = {ranks * med['scan']:.0f} s of header reads "
              f"without the cache; build + {ranks - 1} x cached = {med['build'] + (ranks - 1) * med['cached']:.0f} s "
              "of work with it (one rank builds, the others check the cache side by side)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_data_scan"))
    parser.add_argument("--out", type=Path, help="also write the table, with the command, to this markdown file")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    paths = write_media(args.workdir, args.records)
    cache = cache_for(args.workdir / "mixture.yaml")
    text = report(measure(paths, cache, args.repeats), args.records, cache, args)
    print(text)
    if args.out:
        command = "python benchmarks/bench_data_scan.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"```\n{command}\n```\n\n{text}\n")
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
