"""Every bad-input case of docs/video.md, each on a file this test makes (a damaged copy of a real video, or
one written with PyAV), plus the command line's one-line error."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from test_video_decode import counter_frames, sample_video, write_video
from typer.testing import CliRunner

from tempflex.cli import app
from tempflex.video import VideoDecodeError, load_video


def damaged(
    path: Path, out: Path, keep: float = 1.0, noise_at: tuple[float, ...] = (), noise: int = 0
) -> Path:
    """A copy of ``path`` cut to its first ``keep`` fraction, with ``noise`` random bytes at each ``noise_at``."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for at in noise_at:
        offset = int(len(data) * at)
        data[offset : offset + noise] = rng.integers(0, 256, noise, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data[: int(len(data) * keep)]))
    return out


def raises(path: Path, match: str, **kwargs) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError, match=match) as info:
        load_video(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message  # names the file, one line
    assert isinstance(info.value, ValueError)
    return info.value


def test_missing_file(tmp_path):
    raises(tmp_path / "missing.mp4", "no such file")


def test_directory(tmp_path):
    raises(tmp_path, "is a directory")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("noise.mp4", np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("notes.txt", b"not a video\n" * 50),  # FFmpeg's tty demuxer would render this as "video"
    ],
)
def test_not_media(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    raises(path, "cannot open as a video|not a video file")


def test_empty_file(tmp_path):
    path = tmp_path / "zero.mp4"
    path.write_bytes(b"")
    raises(path, "empty file \\(0 bytes\\)")


def test_truncated_before_the_index_is_an_error(tmp_path):
    # bigbuckbunny.mp4 keeps its index (moov) at the end: its first 30% cannot be opened at all
    path = damaged(sample_video("bigbuckbunny.mp4"), tmp_path / "cut.mp4", keep=0.3)
    raises(path, "cannot open as a video")


def test_truncated_after_the_index_returns_the_readable_prefix(tmp_path):
    # the same cut of a "faststart" copy (index first): the frames that were written are returned
    faststart = tmp_path / "faststart.mp4"
    with (
        av.open(str(sample_video("bikes.mp4"))) as src,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst,
    ):
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    path = damaged(faststart, tmp_path / "cut.mp4", keep=0.3)
    with pytest.warns(UserWarning, match="could not be decoded"):  # the last, half-written packets
        video = load_video(path)
    assert video.truncated and 10 < video.num_source_frames < 250
    assert video.num_frames + video.skipped_frames == video.num_source_frames
    assert video.duration < 5.0 and video.timestamps[-1] < video.duration
    sampled = load_video(path, num_frames=8)  # uniform over what was read
    assert sampled.num_frames == 8 and sampled.timestamps[-1] < video.duration


def _zero_frame_mp4(tmp_path: Path) -> Path:
    """An mp4 whose one video stream has no samples: a one-frame file with its sample tables emptied
    (FFmpeg's mp4 muxer drops a video track that never got a packet, so this cannot be written directly)."""
    data = bytearray(write_video(tmp_path / "one.mp4", counter_frames(1)).read_bytes())
    stsz = data.find(b"stsz")
    data[stsz + 8 : stsz + 16] = struct.pack(">II", 0, 0)  # sample size 0, sample count 0
    stts = data.find(b"stts")
    data[stts + 8 : stts + 12] = struct.pack(">I", 0)  # no time-to-sample entries
    path = tmp_path / "zero.mp4"
    path.write_bytes(bytes(data))
    return path


def _write_tone(out: av.container.OutputContainer, frames: int = 8) -> None:
    stream = out.add_stream("aac", rate=16000)
    for i in range(frames):
        tone = np.sin(np.arange(1024) / 10 + i).astype(np.float32)[None]  # (channels, samples)
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, i * 1024
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def _zero_frame_mkv(tmp_path: Path) -> Path:
    """A Matroska file with a video track that never gets a frame, next to a short audio track."""
    path = tmp_path / "zero.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        _write_tone(out)
    return path


@pytest.mark.parametrize("make", [_zero_frame_mp4, _zero_frame_mkv])
def test_video_stream_with_zero_frames(tmp_path, make):
    path = make(tmp_path)
    with av.open(str(path)) as container:
        assert len(container.streams.video) == 1  # the stream is there, its frames are not
    raises(path, "video stream has no frames")


def test_audio_only(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        _write_tone(out)
    raises(path, r"has no video stream \(only audio streams\)")


def test_corrupt_packets_in_the_middle_are_skipped_and_counted(tmp_path):
    path = damaged(sample_video("bikes.mp4"), tmp_path / "corrupt.mp4", noise_at=(0.4, 0.5), noise=20000)
    with pytest.warns(UserWarning, match=r"\d+ of 250 frames could not be decoded"):
        video = load_video(path)
    assert 0 < video.skipped_frames < 125 and video.num_frames == 250 - video.skipped_frames
    assert video.indices[:10] == list(range(10))  # the frames before the damage are all there
    assert not video.truncated


def test_all_packets_corrupt_is_an_error(tmp_path):
    source = sample_video("bikes.mp4")
    data = bytearray(source.read_bytes())
    start, end = data.find(b"mdat") + 8, data.find(b"moov") - 8  # every coded frame, headers intact
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path = tmp_path / "noise.mp4"
    path.write_bytes(bytes(data))
    raises(path, "none of the 8 requested frames could be decoded", num_frames=8)


def test_frame_size_over_the_bound_is_refused_before_decoding(tmp_path):
    path = write_video(tmp_path / "small.mp4", counter_frames(2))
    raises(path, r"frame size 64x48 \(3072 pixels\) is over the limit of 3000 pixels", max_pixels=3000)
    assert load_video(path, max_pixels=3072).num_frames == 2


def test_window_past_the_end(tmp_path):
    path = write_video(tmp_path / "short.mp4", counter_frames(3))
    raises(path, "past the end of the video", start=5.0)


def test_cli_tokens_on_a_bad_video_is_one_line(tmp_path):
    runner = CliRunner()
    cut = damaged(sample_video("bigbuckbunny.mp4"), tmp_path / "cut.mp4", keep=0.3)
    for path in (cut, _zero_frame_mp4(tmp_path)):
        result = runner.invoke(app, ["tokens", "--media", str(path)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and str(path) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_request_too_large_for_memory_is_refused_before_decoding():
    """Every frame of a long video by default would fill the memory: refused up front, naming the way out."""
    from tempflex.samples import sample_videos
    from tempflex.video import VideoDecodeError, load_video

    path = next(p for p in sample_videos() if p.name == "bigbuckbunny.mp4")
    with pytest.raises(VideoDecodeError, match=r"132 frames of 1280x720 need 0\.3 GiB.*num_frames"):
        load_video(path, max_bytes=100 << 20)
    with pytest.raises(VideoDecodeError, match="max_bytes"):
        load_video(path, backend="decord", max_bytes=100 << 20)
    assert load_video(path, num_frames=8, max_bytes=100 << 20).num_frames == 8
