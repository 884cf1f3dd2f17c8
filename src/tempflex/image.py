"""Load one image as 8-bit RGB: files, PIL images and arrays, with EXIF orientation and clear errors.

Every source ends as a fully decoded ``PIL.Image.Image`` in mode ``RGB``:

- EXIF orientation is applied (``ImageOps.exif_transpose``), so a phone photo stored sideways comes out upright.
- Grayscale (``1``, ``L``) repeats the channel; palette images (``P``) expand their palette.
- Transparency (``RGBA``, ``LA``, ``PA``, palette with a transparent index) is composited on WHITE, the usual
  page background, rather than dropped (dropping alpha reveals whatever colour the encoder left under it).
- ``CMYK`` uses Pillow's conversion (no ICC colour management).
- 16-bit data (``I;16``, ``I;16B``, ``I;16L``, and ``I``, which Pillow uses for 16-bit TIFF/PNG data) is scaled
  to 8 bits by ``round(v / 257)`` (0 -> 0, 65535 -> 255), not clipped at 255 as Pillow's ``convert`` does.
  ``I`` values outside [0, 65535] are clipped first. ``F`` (float) images are clipped to [0, 255].
- Animated or multi-page files give their first frame.

Decompression bombs: a file's pixel count is read from its header (``Image.open`` is lazy) and checked against
``max_pixels`` before any pixel is decoded. Pillow's own guard (``Image.DecompressionBombError`` above twice its
global ``Image.MAX_IMAGE_PIXELS``) is turned into the same error; its warning is silenced during ``open`` only,
because our bound is the one that decides (Pillow's global is never changed).

Truncated files raise ``ImageDecodeError``: we never load a partial image (Pillow fills the missing rows of a
truncated JPEG with grey when ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set; that global is left to the caller,
default False). Every error is one line naming the file and the cause.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS: ~0.25 GB of RGB at 3 bytes a pixel
WHITE = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}

ImageSource = str | os.PathLike | Image.Image | np.ndarray


class ImageDecodeError(ValueError):
    """An image could not be read; the message names the file and the cause on one line."""


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load ``source`` (a path, a PIL image, or an (H, W) / (H, W, 3) uint8 array) as a decoded RGB image.

    Raises ``ImageDecodeError`` (a ``ValueError``) for missing files, directories, non-images, truncated or empty
    images and images of more than ``max_pixels`` pixels; ``TypeError`` for other kinds of source.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if isinstance(source, (str, os.PathLike)):
        return _load_file(Path(source), max_pixels)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels, "PIL image")
        _decode(source, "PIL image")  # a lazily opened image may still hold undecoded (truncated) data
        return _to_rgb(_upright(source), "PIL image")
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    raise TypeError(f"load_image takes a path, a PIL image or a uint8 array, got {type(source).__name__}")


def _load_file(path: Path, max_pixels: int) -> Image.Image:
    if not path.exists():
        raise ImageDecodeError(f"{path}: no such file")
    if path.is_dir():
        raise ImageDecodeError(f"{path}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageDecodeError(f"{path}: empty file (0 bytes)")
    image = _open_lazily(path)
    with image:
        _check_size(image.size, max_pixels, str(path))  # header only: nothing decoded yet
        _decode(image, str(path))
        return _to_rgb(_upright(image), str(path))


def _decode(image: Image.Image, name: str) -> None:
    """Decode the pixels now, so that a truncated or corrupt file fails here with its name."""
    try:
        image.load()
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{name}: too many pixels ({_one_line(e)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"{name}: truncated or corrupt image data ({_one_line(e)})") from None


def _open_lazily(path: Path) -> Image.Image:
    """``Image.open``: reads the header only. Pillow's bomb warning is silenced here; our bound decides."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{path}: too many pixels ({_one_line(e)})") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image (no format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"{path}: cannot read image header ({_one_line(e)})") from None


def _check_size(size: tuple[int, int], max_pixels: int, name: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{name}: zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: too many pixels ({width}x{height} = {width * height:,} > max_pixels={max_pixels:,}); "
            "a possible decompression bomb"
        )


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"array input: expected uint8 pixels, got {array.dtype}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ImageDecodeError(f"array input: expected shape (H, W) or (H, W, 3), got {array.shape}")
    _check_size((array.shape[1], array.shape[0]), max_pixels, "array input")
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")  # a copy: the caller's array is not shared


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; an unreadable EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        return image


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Any Pillow mode -> a decoded 8-bit RGB image (see the module docstring for each mode)."""
    mode = image.mode
    try:
        if mode == "RGB":
            return image.copy()
        if mode == "P" and "transparency" in image.info:
            image, mode = image.convert("RGBA"), "RGBA"
        if mode in _ALPHA_MODES:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, WHITE + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        if mode in _SIXTEEN_BIT_MODES:
            return Image.fromarray(_sixteen_to_eight(np.asarray(image))).convert("RGB")
        if mode == "F":
            return Image.fromarray(np.clip(np.asarray(image), 0, 255).round().astype(np.uint8)).convert("RGB")
        return image.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageDecodeError(f"{name}: cannot convert mode {mode} to RGB ({_one_line(e)})") from None


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """16-bit samples -> uint8 by round(v / 257), exact on integers: (v + 128) // 257."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
