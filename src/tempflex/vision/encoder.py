"""Run SigLIP2-naflex over images and frames of mixed resolutions, with no padding.

Shapes: N visual items (images or videos), F frames of an item, h x w its patch grid, K = p*p*C patch values,
D encoder width.

``Siglip2VisionModel`` takes a padded batch (B, max_patches, K) with an attention mask and interpolates its
position table to each image's (h, w). Padding wastes compute when sizes differ, so frames are grouped by grid
size: every frame of one video shares a grid, and images of the same size share a forward pass. Within a group
no mask is needed, and each frame's output equals a forward of that frame alone.

Position embeddings ("extend from 256 to 2048", paper section 3.1): SigLIP2-naflex keeps a 16x16 learned table
and bilinearly resizes it (antialiased) to every image's own (h, w) grid, so any grid up to the patch limit is
already served. ``extend_position_table`` resamples the table itself once to a larger square (45x45 = 2025 <=
2048 entries by default), giving high-resolution inputs their own trainable positions; the per-image resize
then starts from that table. The stored table size is ``vision_config.num_patches``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from transformers import Siglip2VisionModel


def split_items(pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
    """(sum F*h*w, K) -> per item (F, h*w, K)."""
    sizes = [int(t * h * w) for t, h, w in grid_thw.tolist()]
    if sum(sizes) != pixel_values.shape[0]:
        raise ValueError(f"pixel_values holds {pixel_values.shape[0]} patches but the grids need {sum(sizes)}")
    chunks = torch.split(pixel_values, sizes, dim=0)
    return [c.reshape(int(t), int(h * w), -1) for c, (t, h, w) in zip(chunks, grid_thw.tolist())]


def encode_grids(
    vision_tower: Siglip2VisionModel,
    pixel_values: torch.Tensor,
    grid_thw: torch.Tensor,
    *,
    max_frames_per_pass: int = 64,
) -> list[torch.Tensor]:
    """Encode packed patches (sum F*h*w, K) with grids (N, 3) -> per item features (F, h*w, D)."""
    items = split_items(pixel_values, grid_thw)
    dtype = vision_tower.embeddings.patch_embedding.weight.dtype
    groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # (h, w) -> [(item, frame)]
    for i, (t, h, w) in enumerate(grid_thw.tolist()):
        groups[(h, w)].extend((i, f) for f in range(t))
    outputs = [torch.empty(0)] * len(items)
    frames_out: dict[tuple[int, int], torch.Tensor] = {}
    for (h, w), members in groups.items():
        batch = torch.stack([items[i][f] for i, f in members]).to(dtype)  # (G, h*w, K)
        for start in range(0, len(members), max_frames_per_pass):
            chunk = batch[start : start + max_frames_per_pass]  # (g, h*w, K)
            shapes = torch.tensor([[h, w]] * chunk.shape[0], device=chunk.device)
            mask = torch.ones(chunk.shape[:2], dtype=torch.long, device=chunk.device)
            hidden = vision_tower(
                pixel_values=chunk, pixel_attention_mask=mask, spatial_shapes=shapes
            ).last_hidden_state  # (g, h*w, D)
            for k, member in enumerate(members[start : start + max_frames_per_pass]):
                frames_out[member] = hidden[k]
    for i, item in enumerate(items):
        outputs[i] = torch.stack([frames_out[(i, f)] for f in range(item.shape[0])])  # (F, h*w, D)
    return outputs


@torch.no_grad()
def extend_position_table(vision_tower: Siglip2VisionModel, max_positions: int = 2048) -> int:
    """Resample the learned square position table to the largest square side s with s*s <= max_positions.

    Bilinear, like SigLIP2's own per-image resize (paper: "p'_j = Interp(p, j)"). Updates the module and
    ``vision_tower.config.num_patches`` in place and returns the new number of table entries.
    """
    emb = vision_tower.embeddings
    old = emb.position_embedding_size
    side = math.isqrt(max_positions)
    if side <= old:
        return old * old
    table = emb.position_embedding.weight.reshape(old, old, -1).permute(2, 0, 1).unsqueeze(0)  # (1, D, s0, s0)
    new = F.interpolate(table.float(), size=(side, side), mode="bilinear", align_corners=False)  # (1, D, s, s)
    new = new.squeeze(0).permute(1, 2, 0).reshape(side * side, -1)  # (s*s, D)
    emb.position_embedding = torch.nn.Embedding(side * side, new.shape[-1]).to(emb.position_embedding.weight)
    emb.position_embedding.weight.copy_(new)
    emb.num_patches = side * side
    emb.position_embedding_size = side
    vision_tower.config.num_patches = side * side
    return side * side
