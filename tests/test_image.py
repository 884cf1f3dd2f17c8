"""load_image: real photos from scikit-image, every colour mode, EXIF orientation, and each bad file made here."""

from __future__ import annotations

import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image

from tempflex.image import ImageDecodeError, load_image


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


# -- real photos -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"])
def test_colour_photos_load_unchanged(name):
    path = skimage_photo(name)
    image = load_image(path)
    assert _rgb(image).shape == (Image.open(path).height, Image.open(path).width, 3)
    assert np.array_equal(_rgb(image), np.asarray(Image.open(path).convert("RGB")))
    assert np.array_equal(_rgb(load_image(str(path))), _rgb(image))  # str and Path alike


def test_grayscale_photo_repeats_the_channel():
    path = skimage_photo("camera.png")  # mode L, 512x512
    rgb = _rgb(load_image(path))
    gray = np.asarray(Image.open(path))
    assert rgb.shape == (512, 512, 3)
    for c in range(3):
        assert np.array_equal(rgb[..., c], gray)


def test_pil_image_and_arrays():
    photo = Image.open(skimage_photo("chelsea.png"))  # lazily opened: load_image decodes it
    expected = np.asarray(photo.convert("RGB"))
    assert np.array_equal(_rgb(load_image(photo)), expected)
    assert np.array_equal(_rgb(load_image(expected)), expected)
    gray = expected[..., 0].copy()
    assert np.array_equal(_rgb(load_image(gray))[..., 2], gray)
    with pytest.raises(ImageDecodeError, match="uint8"):
        load_image(expected.astype(np.float32))
    with pytest.raises(ImageDecodeError, match=r"\(H, W\) or \(H, W, 3\)"):
        load_image(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="path, a PIL image or a uint8 array"):
        load_image(42)


# -- EXIF orientation ------------------------------------------------------------------------------------------------
def _exif_jpeg(tmp_path: Path, pixels: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"oriented_{orientation}.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    return path


def test_exif_orientation_6_rotates_a_real_photo(tmp_path):
    stored = np.asarray(Image.open(skimage_photo("chelsea.png")).convert("RGB"))  # (300, 451, 3), stored sideways
    path = _exif_jpeg(tmp_path, stored, orientation=6)
    image = load_image(path)
    assert image.size == (300, 451)  # (W, H): rotated 90 degrees clockwise for display
    upright = np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise
    assert np.abs(_rgb(image).astype(int) - upright.astype(int)).mean() < 3  # JPEG loss only


@pytest.mark.parametrize("orientation, expected", [(1, lambda a: a), (3, lambda a: a[::-1, ::-1]),
                                                    (8, lambda a: np.rot90(a, k=1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientations_on_quadrants(tmp_path, orientation, expected):
    """Four solid quadrants survive JPEG exactly enough to check where each one ends up."""
    pixels = np.zeros((64, 96, 3), np.uint8)
    pixels[:32, :48] = (255, 0, 0)
    pixels[:32, 48:] = (0, 255, 0)
    pixels[32:, :48] = (0, 0, 255)
    pixels[32:, 48:] = (255, 255, 0)
    got = _rgb(load_image(_exif_jpeg(tmp_path, pixels, orientation)))
    want = expected(pixels)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4


# -- colour modes ----------------------------------------------------------------------------------------------------
def test_rgba_and_la_composite_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200  # red-ish colour under the alpha
    rgba[:4, :, 3] = 255  # top half opaque
    rgba[4:, :, 3] = 0  # bottom half fully transparent -> white
    rgba[4:, :4, 3] = 128  # half transparent -> halfway to white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = _rgb(load_image(tmp_path / "a.png"))
    assert (got[:4] == (200, 0, 0)).all()
    assert (got[4:, 4:] == 255).all()
    assert np.allclose(got[4:, :4].astype(int), (228, 127, 127), atol=1)
    la = Image.fromarray(np.stack([np.full((4, 4), 10, np.uint8), np.zeros((4, 4), np.uint8)], -1), "LA")
    assert (_rgb(load_image(la)) == 255).all()


def test_palette_with_and_without_transparency(tmp_path):
    photo = Image.open(skimage_photo("coffee.png")).convert("RGB")
    palette = photo.quantize(colors=16)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(_rgb(load_image(tmp_path / "p.png")), np.asarray(palette.convert("RGB")))
    small = Image.new("P", (4, 2))
    small.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    small.putpixel((0, 0), 1)  # red pixel; index 0 (black) is transparent
    small.save(tmp_path / "t.png", transparency=0)
    got = _rgb(load_image(tmp_path / "t.png"))
    assert tuple(got[0, 0]) == (255, 0, 0)
    assert (got[1] == 255).all()  # transparent black -> white


def test_cmyk_jpeg(tmp_path):
    photo = Image.open(skimage_photo("astronaut.png")).convert("RGB")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    got = _rgb(load_image(tmp_path / "cmyk.jpg"))
    assert np.abs(got.astype(int) - np.asarray(photo).astype(int)).mean() < 6


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i4"])
def test_sixteen_bit_scaled_not_clipped(tmp_path, dtype):
    ramp = np.array([[0, 128, 129, 257, 32768, 65280, 65535, 1000]], dtype=np.int64)
    image = Image.fromarray(ramp.astype(dtype))
    assert image.mode in {"I;16", "I;16B", "I"}
    got = _rgb(load_image(image))[0, :, 0]
    assert got.tolist() == [0, 0, 1, 1, 128, 254, 255, 4]  # round(v / 257)


def test_sixteen_bit_png_file(tmp_path):
    gray = np.asarray(Image.open(skimage_photo("camera.png")), dtype=np.uint16) * 257  # exact 8 -> 16 bit
    Image.fromarray(gray).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    got = _rgb(load_image(tmp_path / "g16.png"))
    assert np.array_equal(got[..., 1], (gray // 257).astype(np.uint8))


# -- bad files -------------------------------------------------------------------------------------------------------
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height but holds no pixel data: any decode attempt would fail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def _assert_one_line(error: pytest.ExceptionInfo, path: Path, cause: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message and cause in message, message
    assert isinstance(error.value, ValueError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageDecodeError) as e:
        load_image(tmp_path / "nope.png")
    _assert_one_line(e, tmp_path / "nope.png", "no such file")
    with pytest.raises(ImageDecodeError) as e:
        load_image(tmp_path)
    _assert_one_line(e, tmp_path, "is a directory")


def test_not_an_image_and_empty_file(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n" * 10)
    with pytest.raises(ImageDecodeError) as e:
        load_image(tmp_path / "notes.png")
    _assert_one_line(e, tmp_path / "notes.png", "not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError) as e:
        load_image(tmp_path / "empty.jpg")
    _assert_one_line(e, tmp_path / "empty.jpg", "empty file")


def test_zero_size_images(tmp_path):
    with pytest.raises(ImageDecodeError, match="zero-size"):
        load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(ImageDecodeError, match="zero-size"):
        load_image(np.zeros((0, 4, 3), np.uint8))
    path = _png_header_only(tmp_path / "zero.png", 0, 0)  # Pillow refuses a 0x0 header outright
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_image(path)


@pytest.mark.parametrize("suffix, keep", [(".png", 0.5), (".png", 0.99), (".jpg", 0.5), (".jpg", 0.98)])
def test_truncated_files_raise(tmp_path, suffix, keep):
    source = tmp_path / f"full{suffix}"
    Image.open(skimage_photo("astronaut.png")).convert("RGB").save(source)
    data = source.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageDecodeError) as e:
        load_image(cut)
    _assert_one_line(e, cut, "truncated")


def test_too_many_pixels_checked_before_decoding(tmp_path):
    # 10000x10000 = 1e8 > 89_478_485: rejected from the header (decoding would report truncation instead)
    bomb = _png_header_only(tmp_path / "bomb.png", 10_000, 10_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError) as e:
            load_image(bomb)
    _assert_one_line(e, bomb, "too many pixels")
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    huge = _png_header_only(tmp_path / "huge.png", 100_000, 100_000)  # past Pillow's own hard limit
    with pytest.raises(ImageDecodeError) as e:
        load_image(huge)
    _assert_one_line(e, huge, "too many pixels")
    photo = tmp_path / "astronaut.png"
    shutil.copy(skimage_photo("astronaut.png"), photo)
    with pytest.raises(ImageDecodeError, match=r"512x512 = 262,144 > max_pixels=100,000"):
        load_image(photo, max_pixels=100_000)
    assert load_image(photo, max_pixels=512 * 512).size == (512, 512)
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        load_image(np.zeros((20, 20), np.uint8), max_pixels=399)
