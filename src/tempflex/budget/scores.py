"""Shared arithmetic of the reducers: temporal change scores, groups, quotas and even spreads.

Shapes: T frames, h x w merged grid, N tokens, E width, G groups.

A token's neighbour is the token at the same (row, col) in the adjacent frame (t - 1 or t + 1) of the same
``VisualTokens``; a frame whose tokens were all removed leaves its neighbours without one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from tempflex.budget.base import VisualTokens


def neighbours(tokens: VisualTokens) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) index of each token's previous-frame and next-frame counterpart, -1 where there is none."""
    dense = tokens.frame_index()  # (T, h, w)
    t, row, col = tokens.positions.unbind(dim=1)
    padded = torch.nn.functional.pad(dense, (0, 0, 0, 0, 1, 1), value=-1)  # (T + 2, h, w): frames -1 and T
    return padded[t, row, col], padded[t + 2, row, col]


def _isolated(x: torch.Tensor, frame: torch.Tensor, frames: int, cosine: bool) -> torch.Tensor:
    """Change of tokens without any neighbour: their distance to their own frame's mean token."""
    sums = torch.zeros(frames, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, frame, x)  # (T, E)
    counts = torch.bincount(frame, minlength=frames).clamp(min=1).unsqueeze(1)  # (T, 1)
    mean = (sums / counts)[frame]  # (N, E)
    if cosine:
        return 1 - torch.nn.functional.cosine_similarity(x, mean, dim=-1)
    return torch.linalg.vector_norm(x - mean, dim=-1)


def _change(tokens: VisualTokens, cosine: bool, p: float = 2.0) -> torch.Tensor:
    """(N,) float32 on the CPU (the reducers' bookkeeping lives there), computed where the tokens are."""
    x = tokens.tokens.detach().float()  # (N, E)
    prev, nxt = neighbours(tokens)
    other = torch.where(prev >= 0, prev, nxt)  # FluxViT's code: a group's first frame takes its change to the next
    ref = x[other.clamp(min=0).to(x.device)]  # (N, E)
    if cosine:
        change = 1 - torch.nn.functional.cosine_similarity(x, ref, dim=-1)
    else:
        change = torch.linalg.vector_norm(x - ref, ord=p, dim=-1)
    change = change.cpu()
    alone = other < 0
    if bool(alone.any()):
        frame = tokens.positions[:, 0].to(x.device)
        change[alone] = _isolated(x, frame, tokens.frames, cosine).cpu()[alone]
    return change


def temporal_change(tokens: VisualTokens, p: float = 2.0) -> torch.Tensor:
    """(N,) float: ||x_t - x_{t-1}||_p at the same place (FluxViT's dynamic value D); a token without a previous
    frame takes its change to the next frame, one with neither its distance to its frame's mean token."""
    return _change(tokens, cosine=False, p=p)


def cosine_change(tokens: VisualTokens) -> torch.Tensor:
    """(N,) float in [0, 2]: 1 - cos(x_t, x_{t-1}) (TimeChat-Online's DTD), with the same fallbacks."""
    return _change(tokens, cosine=True)


def split(count: int, parts: int) -> list[range]:
    """``count`` items in ``min(parts, count)`` consecutive ranges whose sizes differ by at most one, the longer
    ranges first (numpy's ``array_split``): 5 frames in 2 groups -> [0, 3), [3, 5)."""
    parts = max(1, min(parts, count))
    base, extra = divmod(count, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + base + (i < extra))
    return [range(a, b) for a, b in itertools.pairwise(bounds)]


def proportional(total: int, sizes: Sequence[int]) -> list[int]:
    """Split ``total`` <= sum(sizes) in proportion to ``sizes`` (largest remainder, ties to the earlier part);
    every share is at most its size. Equal sizes give total // G each, the remainder to the first parts."""
    whole = sum(sizes)
    if not 0 <= total <= whole:
        raise ValueError(f"cannot split {total} over parts of {whole} in all")
    if whole == 0:
        return [0] * len(sizes)
    shares = [total * s // whole for s in sizes]
    rest = total - sum(shares)
    order = sorted(range(len(sizes)), key=lambda i: (-((total * sizes[i]) % whole), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def spread(total: int, caps: Sequence[int]) -> list[int]:
    """Split ``total`` as evenly as the caps allow; an uneven remainder goes to evenly spaced parts
    (Bresenham), what a capped part cannot take to the others. Sum == min(total, sum(caps))."""
    counts = [0] * len(caps)
    remaining = min(total, sum(caps))
    while remaining > 0:
        open_ = [i for i, c in enumerate(caps) if counts[i] < c]
        n = len(open_)
        given = 0
        for k, i in enumerate(open_):
            share = remaining * (k + 1) // n - remaining * k // n
            take = min(share, caps[i] - counts[i])
            counts[i] += take
            given += take
        remaining -= given
    return counts


def strided(count: int, keep: int) -> list[int]:
    """``keep`` of ``range(count)`` evenly spaced, at the centres of ``keep`` equal strides."""
    return [(2 * i + 1) * count // (2 * keep) for i in range(keep)]


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores, ties to the earlier index, returned sorted."""
    order = torch.sort(-scores, stable=True).indices
    return order[:k].sort().values
