"""First-order linear recurrences h_f = a_f * h_(f-1) + b_f, h_(-1) = 0, along one tensor dimension.

This is the memory fibre of TFF (paper eq. 2 with a = alpha, b = (1 - alpha) * x). `linear_scan` computes it
exactly in O(log F) vectorised steps; `linear_scan_loop` is the plain loop that tests and benchmark compare
with.

Why an associative scan and not the log-space trick h = exp(cumsum log a) * cumsum(b * exp(-cumsum log a)):
exp(-cumsum log a) grows like prod(1 / a_f), which overflows fp32 after a few dozen frames with a ~ 0.1 and
loses all precision well before that. The scan only ever multiplies numbers in [0, 1] by one another and by b,
so nothing overflows; products that underflow to 0 are exactly the terms whose true weight is negligible.
"""

from __future__ import annotations

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Return h with h_f = a_f * h_(f-1) + b_f along ``dim``, h_(-1) = 0 (paper eq. 2, memory fibre).

    Odd-even (Blelloch-style) reduction over pairs (a, b) with the associative combine
    (a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2): pairs of neighbouring steps are merged, the half-length
    recurrence is solved recursively, and the even steps are filled in from their odd predecessors. Work is
    O(F) (about 5 flops per element against 2 for the loop), depth 2 * ceil(log2 F), no Python loop over
    frames.
    Each output h_f is a fixed expression of steps 0..f only, so the scan is exactly causal.

    Args:
        a: decay coefficients, any shape; values in [0, 1] for a stable recurrence (not required).
        b: inputs, the same shape as ``a``.
        dim: the dimension to scan along (negative values count from the end).
    """
    if a.shape != b.shape:
        raise ValueError(
            f"linear_scan: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.ndim == 0:
        raise ValueError("linear_scan: inputs must have at least one dimension")
    if not -a.ndim <= dim < a.ndim:
        raise ValueError(f"linear_scan: dim {dim} out of range for a tensor with {a.ndim} dimensions")
    if a.shape[dim] == 0:
        return b.clone()
    h = _scan_leading(a.movedim(dim, 0), b.movedim(dim, 0))
    return h.movedim(0, dim)


def _scan_leading(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Inclusive scan along dim 0 (see `linear_scan`); recursion depth ceil(log2 F)."""
    n = a.shape[0]
    if n == 1:
        return b
    pairs = n // 2  # steps (2i, 2i+1); with n odd the last step n-1 is filled in with the even ones
    a_first, a_second = a[0 : 2 * pairs : 2], a[1 : 2 * pairs : 2]  # (n // 2, ...) each
    b_first, b_second = b[0 : 2 * pairs : 2], b[1 : 2 * pairs : 2]
    # Two steps merged into one: h_(2i+1) = (a_(2i+1) a_(2i)) h_(2i-1) + (a_(2i+1) b_(2i) + b_(2i+1)).
    h_odd = _scan_leading(a_second * a_first, torch.addcmul(b_second, a_second, b_first))
    # Even steps from their odd predecessors: h_(2i) = a_(2i) h_(2i-1) + b_(2i), and h_0 = b_0 as h_(-1) = 0.
    # Written into one fresh tensor (autograd records the slice copies) instead of cat + stack copies.
    h = torch.empty_like(b)  # (n, ...)
    h[1::2] = h_odd
    h[0] = b[0]
    evens = (n - 1) // 2  # steps 2, 4, ... < n
    h[2::2] = torch.addcmul(b[2::2], a[2::2], h_odd[:evens])
    return h


def linear_scan_loop(a: torch.Tensor, b: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Reference for `linear_scan`: the recurrence of eq. 2 as a plain loop over ``dim``."""
    if a.shape != b.shape:
        raise ValueError(
            f"linear_scan_loop: a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    h = torch.zeros_like(b.select(dim, 0))
    out = []
    for f in range(a.shape[dim]):
        h = a.select(dim, f) * h + b.select(dim, f)
        out.append(h)
    return torch.stack(out, dim=dim)
