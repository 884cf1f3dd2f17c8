"""Video decoding: ``load_video`` against decord, naive PyAV seeking and OpenCV, side by side in one run.

How to run (about 5 minutes on 2 CPU cores, plus about 90 s to encode the clips the first time):
    .venv/bin/python benchmarks/bench_decode.py --out benchmarks/results/decode.md
    .venv/bin/python benchmarks/bench_decode.py --quick        # shorter clips, one repeat

Task: 64 and 128 uniformly sampled frames (segment centres, the frames ``load_video(num_frames=N)`` keeps) as
(T, H, W, 3) uint8 RGB, timed from opening the file. Every reader gets the same frame indices:
- ours: ``load_video(path, num_frames=N)`` (strategy "auto");
- decord: ``VideoReader(path)`` + ``get_batch(indices)``;
- pyav-naive: per target, ``container.seek(pts, backward=True)`` to the keyframe before it, decode up to it;
- opencv: ``CAP_PROP_POS_FRAMES`` + ``read()`` per target ("seek"), or ``grab()`` through every frame and
  ``retrieve()`` the wanted ones ("grab"); both run once, the faster one is repeated and reported.

Clips, encoded with PyAV/libx264 into ``--cache`` (default /tmp/tempflex-bench) and reused. Content: a fixed
random blocky texture scrolling diagonally plus a white box crossing the frame, so every frame differs.
- ``720p_gop12``/``720p_gop250``: 60 s, 1280x720, 25 fps (1500 frames), preset veryfast (B-frames, as real
  files have), keyint 12 or 250 with scene-cut detection off, so the GOP is exactly that.
- ``360p_60min``: 1 hour, 640x360, 10 fps (36,000 frames), preset ultrafast (no B-frames), keyint 250 (x264's
  default: a keyframe every 25 s). 10 fps and ultrafast keep its encode near a minute on 2 cores.
- ``--quick``: 20-s 720p clips and a 10-minute 360p clip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tempflex.video import load_video
from tempflex.video.sampling import select_frames


@dataclass(frozen=True)
class ClipSpec:
    name: str  # file name in the cache folder
    width: int
    height: int
    fps: int
    seconds: int
    gop: int  # keyint: frames between keyframes
    preset: str  # libx264 preset


def clip_specs(quick: bool) -> list[ClipSpec]:
    long_s, hour_s = (20, 600) if quick else (60, 3600)
    tag = "q" if quick else ""
    return [
        ClipSpec(f"720p_gop12{tag}.mp4", 1280, 720, 25, long_s, 12, "veryfast"),
        ClipSpec(f"720p_gop250{tag}.mp4", 1280, 720, 25, long_s, 250, "veryfast"),
        ClipSpec(f"360p_{hour_s // 60}min.mp4", 640, 360, 10, hour_s, 250, "ultrafast"),
    ]


def _texture(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """A (2H, 2W, 3) smooth random texture, twice the frame so that a scrolling crop never wraps visibly."""
    small = rng.integers(0, 256, size=(spec.height // 16, spec.width // 16, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 32, axis=0), 32, axis=1)  # (2H, 2W, 3) blocky noise
    return big


def _frame(texture: np.ndarray, spec: ClipSpec, i: int) -> np.ndarray:
    h, w = spec.height, spec.width
    dy, dx = (2 * i) % h, (3 * i) % w  # diagonal scroll, wraps every few hundred frames
    frame = texture[dy : dy + h, dx : dx + w].copy()  # (H, W, 3)
    box = h // 6
    x = (7 * i) % (w - box)
    y = (h - box) // 2
    frame[y : y + box, x : x + box] = 255
    return frame


def encode_clip(spec: ClipSpec, path: Path, progress=None) -> None:
    """Encode ``spec`` to ``path`` (written to a temporary name first, so an interrupted run leaves no clip)."""
    tmp = path.with_suffix(".part.mp4")
    rng = np.random.default_rng(0)
    texture = _texture(spec, rng)
    total = spec.fps * spec.seconds
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {
            "preset": spec.preset,
            "g": str(spec.gop),
            "keyint_min": str(spec.gop),
            "sc_threshold": "0",
            "crf": "28",
        }
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(_frame(texture, spec, i), format="rgb24")
            out.mux(stream.encode(frame))
            if progress is not None:
                progress(1)
        out.mux(stream.encode())
    tmp.rename(path)


def ensure_clips(folder: Path, quick: bool, progress_factory=None) -> list[tuple[ClipSpec, Path]]:
    """The benchmark clips in ``folder``, encoding the missing ones; ``progress_factory(desc, total)`` returns a
    callable advancing a progress bar."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for spec in clip_specs(quick):
        path = folder / spec.name
        if not path.exists():
            progress = (
                progress_factory(f"encoding {spec.name}", spec.fps * spec.seconds)
                if progress_factory
                else None
            )
            encode_clip(spec, path, progress)
        clips.append((spec, path))
    return clips


# ---- the readers under test: each returns (T, H, W, 3) uint8 RGB frames of the given source indices ----------


def read_ours(path: Path, indices: np.ndarray, count: int) -> np.ndarray:
    return load_video(path, num_frames=count).frames.numpy()


def read_decord(path: Path, indices: np.ndarray, count: int) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=0)
    return reader.get_batch([int(i) for i in indices]).asnumpy()


def read_pyav_naive(path: Path, indices: np.ndarray, count: int) -> np.ndarray:
    """The usual hand-written reader: per target, seek to the keyframe before it and decode up to it."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = 1 / (stream.average_rate * stream.time_base)  # pts per frame
        for i in indices:
            target = (stream.start_time or 0) + round(int(i) * step)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
    return np.stack(frames)


def read_opencv_seek(path: Path, indices: np.ndarray, count: int) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    for i in indices:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, bgr = capture.read()
        if ok:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def read_opencv_grab(path: Path, indices: np.ndarray, count: int) -> np.ndarray:
    """Sequential: grab (demux + decode) every frame up to the last wanted one, retrieve (convert) the wanted."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    wanted, frames = {int(i) for i in indices}, []
    for i in range(int(indices[-1]) + 1):
        if not capture.grab():
            break
        if i in wanted:
            frames.append(cv2.cvtColor(capture.retrieve()[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


# ---- the run --------------------------------------------------------------------------------------------------

READERS = {"ours": read_ours, "decord": read_decord, "pyav-naive": read_pyav_naive}
OPENCV = {"seek": read_opencv_seek, "grab": read_opencv_grab}


def uniform_indices(path: Path, count: int) -> np.ndarray:
    """The frames ``load_video(num_frames=count)`` keeps, from the stream's frame count and rate (constant here)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        total, fps = stream.frames, float(stream.average_rate)
    times = np.arange(total) / fps
    return select_frames(times, 0.0, total / fps, num_frames=count)


def timed(reader: Callable, path: Path, indices: np.ndarray, count: int) -> float:
    begin = time.perf_counter()
    frames = reader(path, indices, count)
    elapsed = time.perf_counter() - begin
    if frames.shape[0] != len(indices):
        raise RuntimeError(f"{reader.__name__} returned {frames.shape[0]} frames, expected {len(indices)}")
    return elapsed


def measure_case(path: Path, count: int, repeats: int, advance: Callable[[], None]) -> dict[str, float]:
    """Median seconds per reader. Readers alternate within each repeat, so load changes hit all of them.

    OpenCV: its per-target seek and its sequential grab run once each, then only the faster one repeats.
    """
    indices = uniform_indices(path, count)
    first = {name: timed(fn, path, indices, count) for name, fn in OPENCV.items()}
    advance()
    opencv = min(first, key=first.get)
    readers = {**READERS, f"opencv-{opencv}": OPENCV[opencv]}
    times: dict[str, list[float]] = {name: [] for name in readers}
    times[f"opencv-{opencv}"].append(first[opencv])
    for _ in range(repeats):
        for name, fn in readers.items():
            if len(times[name]) < repeats:
                times[name].append(timed(fn, path, indices, count))
        advance()
    return {name: statistics.median(values) for name, values in times.items()}


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    head = f"{'clip':<18}{'frames':>7}{'ours s':>9}{'decord s':>10}{'pyav-naive s':>14}{'opencv s':>10}  opencv way"
    head += f"{'decord/ours':>13}{'naive/ours':>12}{'opencv/ours':>13}"
    lines = [head]
    for clip, count, res in rows:
        cv_name = next(n for n in res if n.startswith("opencv-"))
        ours = res["ours"]
        lines.append(
            f"{clip:<18}{count:>7}{ours:>9.2f}{res['decord']:>10.2f}{res['pyav-naive']:>14.2f}{res[cv_name]:>10.2f}"
            f"  {cv_name[7:]:<10}{res['decord'] / ours:>13.2f}x{res['pyav-naive'] / ours:>11.2f}x"
            f"{res[cv_name] / ours:>12.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20-s and 10-min clips, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per reader [3; --quick: 1]")
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/tempflex-bench"), help="folder for the clips"
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--out", type=Path, default=None, help="write the table as markdown here")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:

        def factory(desc: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(desc, total=total)
            return lambda n: bar.advance(task, n)

        clips = ensure_clips(args.cache, args.quick, factory)
        for _, path in clips:
            path.read_bytes()  # warm the page cache, so that no reader pays the first read from disk
        task = bar.add_task("timing", total=len(clips) * len(args.frames) * (repeats + 1))
        rows = [
            (
                spec.name.removesuffix(".mp4"),
                count,
                measure_case(path, count, repeats, lambda: bar.advance(task)),
            )
            for spec, path in clips
            for count in args.frames
        ]
    load = os.getloadavg()[0]
    note = (
        f"median of {repeats} (opencv: faster of seek/grab), {os.cpu_count()} CPUs, load average {load:.1f}; "
        f"av {av.__version__}, {', '.join(versions())}"
    )
    text = table(rows)
    print(note)
    print(text)
    if args.out is not None:
        write_markdown(args.out, note, text, args)


def versions() -> list[str]:
    import cv2
    import decord

    return [f"decord {decord.__version__}", f"opencv {cv2.__version__}"]


def write_markdown(out: Path, note: str, text: str, args: argparse.Namespace) -> None:
    command = ".venv/bin/python benchmarks/bench_decode.py" + (" --quick" if args.quick else "")
    command += f" --out {out}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "## Video decoding (`benchmarks/bench_decode.py`)\n\n"
        "Uniformly sampled frames (segment centres) as RGB arrays, from clips the benchmark encodes itself "
        "(see the script's docstring). Times in seconds include opening the file; ratios are other / ours "
        "(above 1: ours is faster).\n\n"
        f"```\n{command}\n```\n\n```\n{note}\n{text}\n```\n"
    )


if __name__ == "__main__":
    main()
