"""Pixels to SigLIP2 patches: resize onto the native grid, normalise, cut 16x16 patches (no torchvision).

Shapes: T frames (1 for an image), H x W pixels, C = 3 channels, p patch side, h x w patch grid.
The patch vector layout is SigLIP2-naflex's own (``convert_image_to_patches`` in transformers): row-major over the
(h, w) grid, each patch flattened as (p, p, C), so checkpoints trained with transformers' processor read our
patches unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tempflex.vision.resize import GridSize

SIGLIP_MEAN = 0.5  # SigLIP2 normalises every channel to [-1, 1]
SIGLIP_STD = 0.5


def to_frames(media: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """One image or a stack of frames as a uint8 tensor (T, H, W, 3). Grayscale, RGBA and palette become RGB."""
    if isinstance(media, Image.Image):
        media = np.array(media.convert("RGB"))  # a writable copy
    frames = torch.as_tensor(media)
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)  # (1, H, W, C)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected pixels shaped (H, W, 3) or (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 pixels, got {frames.dtype}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"empty image or video: shape {tuple(frames.shape)}")
    return frames


def resize_frames(frames: torch.Tensor, grid: GridSize) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, grid.height, grid.width) float32, normalised to [-1, 1].

    Bilinear with antialiasing, like SigLIP2's processor; one size for every frame of a video.
    """
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)  # (T, C, H, W)
    if (x.shape[-2], x.shape[-1]) != (grid.height, grid.width):
        x = F.interpolate(x, size=(grid.height, grid.width), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp_(0.0, 1.0)
    return (x - SIGLIP_MEAN) / SIGLIP_STD


def patchify(pixels: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(T, C, H, W) -> (T, h*w, p*p*C) in SigLIP2's layout; H and W must be multiples of p."""
    t, c, height, width = pixels.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image {width}x{height} is not a multiple of the {patch_size}-px patch")
    h, w = height // patch_size, width // patch_size
    x = pixels.reshape(t, c, h, patch_size, w, patch_size)  # (T, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (T, h, w, p, p, C)
    return x.reshape(t, h * w, patch_size * patch_size * c)  # (T, h*w, p*p*C)
