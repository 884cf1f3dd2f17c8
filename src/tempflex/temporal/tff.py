"""Temporal Fiber Fusion (TFF), paper section 3.2, equations 1-5.

Shapes: B batch, F frames, P patches per frame, D width, H hidden width of phi_loc, K number of frequencies,
A number of active fibres. Input and output of every layer: x (B, F, P, D). A fibre x_p is the (F, D) slice of
one patch p over time.

Choices where the paper is silent or ambiguous (docs/tff.md gives the full reasoning):
- Frames are indexed f = 0..F-1 (the paper starts the memory at m_(-1) = 0), so eq. 3 uses cos(2 pi w f / F)
  with f = 0 for the first frame.
- Aliasing (eq. 3): with F frames only frequencies w <= F/2 are distinct; w > F/2 aliases onto F - w (and a
  multiple of F is the constant 1). ``alias="mask"`` (default) gives those terms coefficient 0, keeping
  w = F/2 (the Nyquist alternation +1, -1); ``alias="keep"`` uses the raw formula. With F = 1 every w is
  masked and the periodic fibre is 0: an image has no period.
- W_alpha has a bias (the paper writes none): it lets each channel learn a default retention, at D parameters.
- The periodic projections are folded per frame, W~_f = sum_w cos(2 pi w f / F) W_w (F, D, D), and applied
  with one einsum: B*F*P*D^2 multiply-adds instead of K times that, plus F*K*D^2 for the fold, shared by all
  B*P fibres. The price is memory: W~ holds F*D^2 numbers (85M at F = 64, D = 1152) and autograd keeps it.
- Initialisation: see `TemporalFiberFusionLayer.reset_parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F_
from torch import nn
from torch.utils.checkpoint import checkpoint

from tempflex.temporal.scan import linear_scan

FIBRES = ("local", "memory", "periodic")  # the order of the outputs of fusion_gate (W_beta)
ALIAS_MODES = ("mask", "keep")


class GatedFFN(nn.Module):
    """FFN(z) = GLU(W2 GELU(W1 z)) of eq. 5: W1 D -> hidden, W2 hidden -> 2D, GLU halves back to D.

    GLU is torch.nn.functional.glu: first half * sigmoid(second half). GELU is the exact (erf) form.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)  # W1
        self.fc2 = nn.Linear(hidden, 2 * dim)  # W2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F_.glu(self.fc2(F_.gelu(self.fc1(z))), dim=-1)


def _guarded_copy_(tensor: torch.Tensor, value: torch.Tensor) -> None:
    """tensor.copy_(value) unless transformers flagged the tensor as loaded from a checkpoint.

    torch.nn.init functions are guarded the same way inside transformers' ``initialize_weights``; a plain
    copy_ is not, so without this check re-running the init would overwrite loaded weights.
    """
    if not getattr(tensor, "_is_hf_initialized", False):
        tensor.copy_(value)


class TemporalFiberFusionLayer(nn.Module):
    """One TFF layer, eq. 1-5: Z = X + LayerNorm(Y + FFN(Y)), Y the fused, context-broadcast fibres.

    Args:
        dim: D, the encoder width.
        kernel_hidden: H, hidden width of phi_loc (``kernel_mlp``); None means D.
        ffn_hidden: hidden width of the gated FFN; None means 2D.
        frequencies: the integer frequencies Omega of eq. 3 (K = 5 in the paper).
        fibres: the active fibres, a non-empty subset of ("local", "memory", "periodic"). Inactive fibres are
            not computed and are left out of the fusion softmax; their parameters still exist, so that one
            checkpoint serves every ablation (under DDP, train an ablation with find_unused_parameters=True).
        alias: "mask" drops the terms of eq. 3 with w > F/2, which alias; "keep" uses the raw formula.
    """

    def __init__(
        self,
        dim: int,
        kernel_hidden: int | None = None,
        ffn_hidden: int | None = None,
        frequencies: Sequence[int] = (1, 2, 4, 8, 16),
        fibres: Sequence[str] = FIBRES,
        alias: Literal["mask", "keep"] = "mask",
    ) -> None:
        super().__init__()
        _check_args(dim, frequencies, fibres, alias)
        hidden = dim if kernel_hidden is None else kernel_hidden
        self.dim = dim
        self.alias = alias
        # Active fibres in canonical order, the order of W_beta's outputs.
        self.fibres = tuple(f for f in FIBRES if f in fibres)
        self._frequency_values = tuple(int(w) for w in frequencies)  # re-filled into the buffer on reset
        # phi_loc: x_bar_p (D) -> k_p (3D), taps j = -1, 0, +1, each D wide (eq. 1).
        self.kernel_mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 3 * dim))
        self.memory_gate = nn.Linear(dim, dim)  # W_alpha (eq. 2), with a bias
        k = len(self._frequency_values)
        self.periodic_proj = nn.Parameter(torch.empty(k, dim, dim))  # W_w (eq. 3), (K, D_out, D_in)
        self.register_buffer("frequencies", torch.tensor(self._frequency_values, dtype=torch.long))  # (K,)
        self.fusion_gate = nn.Linear(dim, 3)  # W_beta (eq. 4), outputs (local, memory, periodic)
        self.context_scale = nn.Parameter(torch.empty(dim))  # gamma of the contextual broadcast
        self.ffn = GatedFFN(dim, 2 * dim if ffn_hidden is None else ffn_hidden)
        self.norm = nn.LayerNorm(dim)  # the LayerNorm of eq. 5
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re-)initialise the layer so that a freshly inserted TFF leaves the encoder's features unchanged.

        - ``norm`` weight and bias are 0, so Z = X + 0 = X exactly (eq. 5). The norm gain still gets a
          gradient (the normalised Y + FFN(Y)) at the first step, so the block opens gradually, like
          zero-initialised residual branches or ControlNet's zero convolutions; a pretrained encoder is not
          disturbed.
        - ``kernel_mlp``'s last Linear is 0 with bias [0, 1, 0] per tap: k = (0, 1, 0), so L = x at the start
          (eq. 1) and the local fibre begins as the identity instead of a random temporal blur.
        - ``fusion_gate`` is 0 (uniform beta = 1/A) and gamma = 0 (no context broadcast yet).
        - Everything else keeps torch's default init: the other Linears their own ``reset_parameters``, and
          each W_w the nn.Linear(D, D) default, U(-1/sqrt(D), 1/sqrt(D)).

        transformers' model-level ``_init_weights`` visits children first; call this from it for the layer to
        restore the TFF init. It uses torch.nn.init (guarded by transformers) or a guarded copy, so parameters
        loaded from a checkpoint are left as they are.
        """
        for linear in (self.kernel_mlp[0], self.memory_gate, self.ffn.fc1, self.ffn.fc2):
            linear.reset_parameters()
        bound = 1.0 / math.sqrt(self.dim)
        nn.init.uniform_(self.periodic_proj, -bound, bound)
        last = self.kernel_mlp[2]
        nn.init.zeros_(last.weight)
        identity_taps = torch.zeros(3, self.dim, device=last.bias.device, dtype=last.bias.dtype)
        identity_taps[1] = 1.0  # (3, D): taps -1, 0, +1
        _guarded_copy_(last.bias, identity_taps.flatten())
        nn.init.zeros_(self.fusion_gate.weight)
        nn.init.zeros_(self.fusion_gate.bias)
        nn.init.zeros_(self.context_scale)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        freqs = torch.tensor(self._frequency_values, dtype=torch.long, device=self.frequencies.device)
        _guarded_copy_(self.frequencies, freqs)

    def local_path(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 1: L_(f,p) = sum_(j=-1..1) k_(p,j) * x_((f+j) mod F, p), k_p = phi_loc(mean_f x_(f,p))."""
        self._check_input(x)
        b, _, p, d = x.shape
        kernel = self.kernel_mlp(x.mean(dim=1))  # (B, P, 3D)
        kernel = kernel.view(b, 1, p, 3, d)  # (B, 1, P, 3, D): taps j = -1, 0, +1, broadcast over F
        prev = torch.roll(x, shifts=1, dims=1)  # prev[:, f] = x[:, (f - 1) mod F]
        nxt = torch.roll(x, shifts=-1, dims=1)  # nxt[:, f] = x[:, (f + 1) mod F]
        # addcmul: fused multiply-adds, fewer full-size temporaries.
        out = torch.addcmul(kernel[..., 1, :] * x, kernel[..., 0, :], prev)  # (B, F, P, D)
        return torch.addcmul(out, kernel[..., 2, :], nxt)  # (B, F, P, D)

    def memory_path(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 2: m_f = alpha_f * m_(f-1) + (1 - alpha_f) * x_f, m_(-1) = 0, alpha = sigmoid(W_alpha x).

        Causal: m_f depends on frames 0..f only. Computed with `linear_scan` along F.
        """
        self._check_input(x)
        alpha = torch.sigmoid(self.memory_gate(x))  # (B, F, P, D)
        return linear_scan(alpha, (1 - alpha) * x, dim=1)

    def periodic_coefficients(
        self, num_frames: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """The cos(2 pi w f / F) of eq. 3 for f = 0..F-1, with aliased terms zeroed: (F, K).

        The phase w * f is reduced mod F in integers first, so the angle stays exact for any F and w. Computed
        in ``dtype``, which callers keep at fp32 or wider: in bf16 the cosines are off by up to about 0.02.
        """
        freqs = self.frequencies.to(device)  # (K,)
        f = torch.arange(num_frames, device=device)  # (F,)
        phase = (f[:, None] * freqs[None, :]) % num_frames  # (F, K), integer
        coef = torch.cos(phase.to(dtype) * (2 * math.pi / num_frames))  # (F, K)
        if self.alias == "mask":
            # w > F/2 aliases onto F - w; w = F/2 (the +1, -1 alternation) is kept.
            coef = coef * (2 * freqs <= num_frames).to(coef.dtype)  # (F, K)
        return coef

    def periodic_path(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 3: P_(f,p) = sum_w cos(2 pi w f / F) W_w x_(f,p), with the K projections folded per frame."""
        self._check_input(x)
        wide = torch.promote_types(x.dtype, torch.float32)  # fp32 for half types, fp64 stays fp64
        coef = self.periodic_coefficients(x.shape[1], x.device, wide).to(x.dtype)  # (F, K)
        folded = torch.einsum("fk,koi->foi", coef, self.periodic_proj)  # W~_f: (F, D_out, D_in)
        return torch.einsum("bfpi,foi->bfpo", x, folded)  # (B, F, P, D)

    def fusion_weights(self, x: torch.Tensor) -> torch.Tensor:
        """beta_p of eq. 4 = softmax(W_beta mean_f x_(f,p)) over the active fibres only: (B, P, A)."""
        self._check_input(x)
        logits = self.fusion_gate(x.mean(dim=1))  # (B, P, 3)
        active = [logits[..., FIBRES.index(name)] for name in self.fibres]  # A tensors (B, P)
        return torch.softmax(torch.stack(active, dim=-1), dim=-1)  # (B, P, A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 4-5: Y = sum beta * (L, M, P); Y += gamma * mean_p Y; Z = X + LayerNorm(Y + FFN(Y))."""
        paths = {"local": self.local_path, "memory": self.memory_path, "periodic": self.periodic_path}
        beta = self.fusion_weights(x)[:, None, :, :, None]  # (B, 1, P, A, 1), broadcast over F and D
        y = sum(beta[..., i, :] * paths[name](x) for i, name in enumerate(self.fibres))  # (B, F, P, D)
        context = y.mean(dim=2, keepdim=True)  # c_f: (B, F, 1, D)
        y = y + self.context_scale * context  # (B, F, P, D)
        return x + self.norm(y + self.ffn(y))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"TFF expects x of shape (B, F, P, D), got {x.ndim} dimensions {tuple(x.shape)}")
        if x.shape[-1] != self.dim:
            raise ValueError(f"TFF expects width D={self.dim} in the last dimension, got {x.shape[-1]}")
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise ValueError(
                f"TFF needs at least one frame and one patch, got F={x.shape[1]}, P={x.shape[2]}"
            )

    def extra_repr(self) -> str:
        freqs = self._frequency_values
        return f"dim={self.dim}, fibres={self.fibres}, frequencies={freqs}, alias={self.alias!r}"


def _check_args(dim: int, frequencies: Sequence[int], fibres: Sequence[str], alias: str) -> None:
    if dim < 1:
        raise ValueError(f"TFF dim must be positive, got {dim}")
    if isinstance(fibres, str):
        raise TypeError(f"TFF fibres must be a list of names, got the string {fibres!r}")
    unknown = [f for f in fibres if f not in FIBRES]
    if unknown:
        raise ValueError(f"unknown TFF fibre(s) {unknown}; choose from {list(FIBRES)}")
    if not fibres or len(set(fibres)) != len(fibres):
        raise ValueError(f"TFF fibres must be a non-empty list without repeats, got {list(fibres)}")
    if len(frequencies) == 0:
        raise ValueError("TFF frequencies must not be empty (eq. 3 needs at least one frequency)")
    if any(int(w) != w or w < 1 for w in frequencies) or len(set(frequencies)) != len(frequencies):
        raise ValueError(f"TFF frequencies must be distinct positive integers, got {list(frequencies)}")
    if alias not in ALIAS_MODES:
        raise ValueError(f"TFF alias must be one of {list(ALIAS_MODES)}, got {alias!r}")


class TemporalFiberFusion(nn.Module):
    """A stack of ``num_layers`` `TemporalFiberFusionLayer`s (4 in the paper): (B, F, P, D) -> (B, F, P, D).

    Set ``gradient_checkpointing = True`` to recompute each layer in the backward pass when training (the
    folded periodic weights and the scan intermediates are the large activations).
    """

    def __init__(self, dim: int, num_layers: int = 4, **layer_kwargs) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"TFF num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList(TemporalFiberFusionLayer(dim, **layer_kwargs) for _ in range(num_layers))
        self.gradient_checkpointing = False

    def reset_parameters(self) -> None:
        """Re-apply every layer's init (see `TemporalFiberFusionLayer.reset_parameters`)."""
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x
