"""PatchMerger (paper section 3.1): z' = MLP(Unshuffle(z)), a true 2x2 window on each frame's patch grid.

Shapes: N frames, h x w patch grid (both multiples of the merge size s), D encoder width, E LLM width.
The authors' public code concatenated four horizontally adjacent patches (a 1x4 window); we merge the 2x2 square,
which the even 32-px resize of ``tempflex.vision.resize`` makes possible for every image and frame.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchMerger(nn.Module):
    """Pixel-unshuffle by ``merge_size`` then a two-layer MLP from s*s*D to the LLM width.

    ``layernorm`` normalises each patch (over D) before the unshuffle, as Qwen2-VL's merger does: the encoder's
    features after TFF are a residual sum with no final norm, and the MLP trains faster on normalised input.
    The MLP's hidden width defaults to the output width (LLaVA's ``mlp2x_gelu``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        merge_size: int = 2,
        hidden_dim: int | None = None,
        layernorm: bool = True,
    ) -> None:
        super().__init__()
        self.merge_size = merge_size
        hidden_dim = hidden_dim or out_dim
        self.norm = nn.LayerNorm(in_dim, eps=1e-6) if layernorm else nn.Identity()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim * merge_size * merge_size, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, out_dim),
        )

    def unshuffle(self, x: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """(N, h*w, D) in row-major patch order -> (N, h/s*w/s, s*s*D).

        Token (i, j) concatenates patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1) of the same frame.
        """
        h, w = (int(v) for v in grid_hw)
        s = self.merge_size
        n, p, d = x.shape
        if p != h * w:
            raise ValueError(f"merger got {p} patches per frame but the grid is {h}x{w}={h * w}")
        if h % s or w % s:
            raise ValueError(f"patch grid {h}x{w} is not divisible by the {s}x{s} merge window")
        x = x.reshape(n, h // s, s, w // s, s, d)  # (N, h/s, dy, w/s, dx, D)
        x = x.permute(0, 1, 3, 2, 4, 5)  # (N, h/s, w/s, dy, dx, D)
        return x.reshape(n, (h // s) * (w // s), s * s * d)  # (N, h/s*w/s, s*s*D)

    def forward(self, x: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """(N, h*w, D) -> (N, h/s*w/s, E)."""
        return self.mlp(self.unshuffle(self.norm(x), grid_hw))
