"""`tempflex tokens`: in-process through typer's CliRunner, and once as a real `python -m tempflex` process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tempflex import samples
from tempflex.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["tokens", *args])


def _json(*args: str) -> dict:
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "tokens"),
    [
        (["--size", "768x768"], 576),
        (["--size", "1280x720"], 880),
        (["--size", "1152x1152"], 1296),
        (["--size", "1448x1448"], 2025),
        (["--size", "32x32"], 4),
        (["--size", "1280x720", "--strategy", "fixed"], 576),
        (["--size", "1280x720", "--strategy", "fixed", "--patch-size", "14"], 729),
        (["--size", "1152x1152", "--strategy", "tiled", "--patch-size", "14"], 7290),
        (["--size", "1280x720", "--strategy", "tiled"], 4032),
        (["--size", "1280x720", "--frames", "128"], 128 * 60),
        (["--size", "1280x720", "--max-tokens", "256"], 252),  # 21x12 merged tokens
    ],
)
def test_size_json(args, tokens):
    data = _json(*args)
    assert data["tokens"] == tokens
    assert {"strategy", "resized", "patch_size", "views", "frames", "per_frame", "extra_text_tokens"} <= set(
        data
    )


def test_video_json_has_separators():
    data = _json("--size", "1280x720", "--frames", "128")
    assert (data["per_frame"], data["token_grid"], data["extra_text_tokens"]) == (60, [10, 6], 128)


def test_size_table_output():
    result = _run("--size", "1280x720", "--strategy", "tiled")
    assert result.exit_code == 0
    assert "4032" in result.stdout and "3x2+1" in result.stdout


def _sample(name: str) -> str:
    return str(next(p for p in samples.sample_photos() + samples.sample_videos() if p.name == name))


def test_media_photo_and_video():
    photo = _json("--media", _sample("astronaut.png"))
    assert (photo["tokens"], photo["input"]["width"], photo["frames"]) == (256, 512, None)
    video = _json("--media", _sample("bigbuckbunny.mp4"))
    assert (video["frames"], video["tokens"], video["input"]["fps"]) == (128, 128 * 60, 25.0)
    assert _json("--media", _sample("bigbuckbunny.mp4"), "--frames", "64")["tokens"] == 64 * 60


def test_table_lists_reference_sizes_and_samples():
    result = _run("--table")
    assert result.exit_code == 0, result.output
    for text in ("1280x704", "880", "7290", "4032", "2025", "bigbuckbunny.mp4", "7680 + 128"):
        assert text in result.stdout
    for photo in samples.sample_photos():
        assert photo.name in result.stdout


def test_table_json():
    data = _json("--table")
    reference = {(r["width"], r["height"]): r["counts"] for r in data["reference"]}
    assert reference[(1280, 720)]["native"]["tokens"] == 880
    assert reference[(1280, 720)]["tiled/16"]["tokens"] == 4032
    assert reference[(1152, 1152)]["tiled/14"]["tokens"] == 7290
    assert len(data["photos"]) == len(samples.sample_photos())
    bunny = next(v for v in data["videos"] if v["file"].endswith("bigbuckbunny.mp4"))
    assert bunny["counts"]["128"]["tokens"] == 128 * 60


def test_help():
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "tokens" in top.stdout
    verb = runner.invoke(app, ["tokens", "--help"])
    assert verb.exit_code == 0 and "--strategy" in verb.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "12x"],
        ["--size", "0x5"],
        ["--size", "1280x720", "--strategy", "pooled"],
        ["--size", "1280x720", "--strategy", "tiled", "--frames", "8"],
        ["--size", "1280x720", "--max-tokens", "0"],
        ["--media", "/no/such/file.mp4"],
        ["--media", "pyproject.toml"],
        ["--table", "--frames", "8"],
        [],
    ],
)
def test_bad_input_exits_2_with_one_line(args):
    result = _run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and result.stdout == ""


def test_not_media_file(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00" * 64)
    result = _run("--media", str(fake))
    assert result.exit_code == 2 and "clip.mp4" in result.stderr


def test_real_process():
    ok = subprocess.run(
        [sys.executable, "-m", "tempflex", "tokens", "--size", "1280x720", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["tokens"] == 880
    bad = subprocess.run(
        [sys.executable, "-m", "tempflex", "tokens", "--size", "12x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_media_images_are_read_as_ask_reads_them(tmp_path):
    """tokens --media and ask share one image loader: EXIF orientation turns the size, the pixel bound refuses what
    ask refuses, and a cut-off file is named."""
    import struct
    import zlib

    from PIL import Image

    from tempflex.image import load_image

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view": stored 128x64, seen 64x128
    Image.new("RGB", (128, 64), "red").save(rotated, exif=exif)
    assert load_image(rotated).size == (64, 128)
    assert _json("--media", str(rotated))["input"]["width"] == 64
    png = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(png)
    data = bytearray(png.read_bytes())
    data[16:24] = struct.pack(">II", 12000, 12000)  # IHDR says 12000x12000 (144 M pixels, over ask's bound)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    huge = tmp_path / "huge.png"
    huge.write_bytes(bytes(data))
    cut = tmp_path / "cut.png"
    Image.new("RGB", (256, 256), "blue").save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    for path, expected in ((huge, "too many pixels"), (cut, "cut.png")):
        result = _run("--media", str(path))
        assert result.exit_code == 2 and expected in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
