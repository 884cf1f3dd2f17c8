"""FluxViT's two encoder plug-ins (FluxViT section 3.3) on SigLIP2-naflex: dual patch norm and GLPE.

Shapes: B images or frames of a padded batch, N patches per row of the batch (padded), K = p*p*C values of a
pixel patch, D encoder width, H heads of width d = D/H, h x w one image's patch grid, s the side of the stored
position table, G the images of one grid size. SigLIP2-naflex puts an image's h*w patches first and its
padding after (``pixel_attention_mask``), and gives every image its own grid (``spatial_shapes``, (B, 2)).

Dual patch norm (DPN, Kumar et al. 2023): LayerNorm over the K values of each flattened pixel patch before the
patch-embedding Linear, LayerNorm over D after it. It replaces ``embeddings.patch_embedding``. It cannot start as
the identity: the pre-norm throws away each patch's mean and scale (a flat grey patch becomes zeros), so a pretrained
encoder sees different inputs and needs tuning. FluxViT's released code uses RMSNorm for both norms; the paper and
Kumar et al. say LayerNorm, which is what this is.

Global-local positional embedding (GLPE), mapped onto SigLIP2:

- Global. FluxViT keeps one learned table and applies a depth-wise convolution to it before resizing it to the
  input. SigLIP2 already keeps a learned table (``position_embedding``, 16x16 for so400m) and resizes it bilinearly
  to every image's own (h, w). Here a depth-wise k x k conv runs on that resized grid, per image, and is added:
  ``pos_i = R_i(P) + DWConv(R_i(P))`` (``GlobalPositionEmbeddings``, which replaces ``embeddings``). It acts at
  patch resolution, so it sees the same neighbourhood at every image size.
- Local. FluxViT's eq. 1, ``Z = (Softmax(QK^T / sqrt(d)) + LPE) V``: a linear map of the values added to the
  attention output, before the output projection. Here LPE(V) is a depth-wise k x k conv of V over each image's own
  (h, w) grid, as in CSWin's LePE (``LocalPositionAttention``, which replaces each layer's ``self_attn``). Per
  channel, so heads are not mixed: it is eq. 1 with a local, per-channel LPE. FluxViT's released code uses a 1x1
  kernel (it must: its token selection leaves no grid); every SigLIP2 frame keeps its full grid, so a 3x3 kernel is
  possible, and its centre tap is that 1x1 map.

Both convs have no bias (it would only shift the patch-embedding bias or the output-projection bias), start at
zero, so the encoder with GLPE inserted equals the plain one bit for bit, and run per image on its own grid:
padding is never read and stays untouched, so an image's features do not depend on what it is batched with. The
encoder runs frame by frame, so the conv is 2D; mixing across frames is TFF's job (``tempflex.temporal``).

Installation is by composition and keeps every existing parameter name: the new modules adopt the original
Linear/Embedding parameters and add their own (``...patch_embedding.pre_norm``, ``embeddings.position_conv``,
``...self_attn.lpe``), so an options-off checkpoint loads into an options-on model with only the new parameters
missing (initialised as above). The attention layers learn their grids from a forward pre-hook on the tower that
copies ``spatial_shapes`` into the keyword ``patch_grids``, which transformers passes down to every
``self_attn`` (gradient checkpointing included). ``LocalPositionAttention`` re-states SigLIP2's 10-line attention
forward through transformers' attention interface (tested equal to ``Siglip2Attention`` for eager and SDPA); its
attention maps are not recorded by ``output_attentions``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Siglip2VisionModel
from transformers import initialization as hf_init
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.siglip2.modeling_siglip2 import (
    Siglip2Attention,
    Siglip2VisionEmbeddings,
    eager_attention_forward,
)

KERNEL_SIZE = 3  # GLPE's depth-wise conv: a 3x3 patch neighbourhood, odd so that "same" padding keeps the grid


class GridDepthwiseConv(nn.Module):
    """Depth-wise k x k conv over each image's own (h, w) patch grid; zero at insertion, zero on padding."""

    def __init__(self, dim: int, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.weight = nn.Parameter(torch.zeros(dim, 1, kernel_size, kernel_size))  # (D, 1, k, k)

    def reset_parameters(self) -> None:
        hf_init.zeros_(self.weight)  # guarded: a weight loaded from a checkpoint is kept

    def forward(self, x: torch.Tensor, spatial_shapes: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), spatial_shapes (B, 2) -> (B, N, D); the images of one grid size share a conv call."""
        length = x.shape[1]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for b, (h, w) in enumerate(spatial_shapes.tolist()):
            if h * w > length:
                raise ValueError(f"a {h}x{w} patch grid does not fit in {length} patches")
            groups[(int(h), int(w))].append(b)
        (h, w), *others = groups
        if not others and h * w == length:
            return self._conv(x, h, w)  # one grid, no padding: what ``encode_grids`` sends
        out = torch.zeros_like(x)  # padding stays zero
        for (h, w), members in groups.items():
            out[members, : h * w] = self._conv(x[members, : h * w], h, w)
        return out

    def _conv(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x (G, h*w, D) -> (G, h*w, D), zero padding at the grid's borders."""
        g, _, dim = x.shape
        grid = x.reshape(g, h, w, dim).permute(0, 3, 1, 2)  # (G, D, h, w)
        y = F.conv2d(grid, self.weight, padding=self.weight.shape[-1] // 2, groups=dim)  # (G, D, h, w)
        return y.permute(0, 2, 3, 1).reshape(g, h * w, dim)  # (G, h*w, D)


class DualPatchNorm(nn.Module):
    """LayerNorm(K) -> the patch-embedding Linear (its parameters adopted, names kept) -> LayerNorm(D)."""

    def __init__(self, linear: nn.Linear, eps: float) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # (D, K); SigLIP2 reads ``patch_embedding.weight.dtype``
        self.bias = linear.bias  # (D,)
        self.pre_norm = nn.LayerNorm(self.in_features, eps=eps)
        self.post_norm = nn.LayerNorm(self.out_features, eps=eps)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (B, N, K) -> (B, N, D)."""
        return self.post_norm(F.linear(self.pre_norm(patches), self.weight, self.bias))


class GlobalPositionEmbeddings(nn.Module):
    """SigLIP2's patch + resized-table embeddings, plus GLPE's depth-wise conv of the resized table."""

    resize_positional_embeddings = staticmethod(Siglip2VisionEmbeddings.resize_positional_embeddings)

    def __init__(self, embeddings: Siglip2VisionEmbeddings, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.config = embeddings.config
        self.embed_dim, self.patch_size = embeddings.embed_dim, embeddings.patch_size
        # Plain attributes, as in SigLIP2: ``tempflex.vision.encoder.extend_position_table`` rewrites them.
        self.num_patches, self.position_embedding_size = embeddings.num_patches, embeddings.position_embedding_size
        self.patch_embedding = embeddings.patch_embedding
        self.position_embedding = embeddings.position_embedding
        self.position_conv = GridDepthwiseConv(self.embed_dim, kernel_size)

    def forward(self, pixel_values: torch.Tensor, spatial_shapes: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, N, K), spatial_shapes (B, 2) -> (B, N, D); the same steps as ``Siglip2VisionEmbeddings``."""
        patch_embeds = self.patch_embedding(pixel_values.to(dtype=self.patch_embedding.weight.dtype))  # (B, N, D)
        side = self.position_embedding_size
        table = self.position_embedding.weight.reshape(side, side, -1)  # (s, s, D)
        positions = self.resize_positional_embeddings(table, spatial_shapes, max_length=pixel_values.shape[1])
        positions = positions + self.position_conv(positions, spatial_shapes)  # (B, N, D)
        return patch_embeds + positions


class LocalPositionAttention(nn.Module):
    """SigLIP2 self-attention (its projections adopted, names kept) plus LPE: out_proj(Softmax(QK^T/sqrt(d))V + LPE(V))."""

    def __init__(self, attention: Siglip2Attention, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.config = attention.config
        self.embed_dim, self.num_heads, self.head_dim = attention.embed_dim, attention.num_heads, attention.head_dim
        self.scale, self.dropout, self.is_causal = attention.scale, attention.dropout, False
        self.q_proj, self.k_proj = attention.q_proj, attention.k_proj
        self.v_proj, self.out_proj = attention.v_proj, attention.out_proj
        self.lpe = GridDepthwiseConv(self.embed_dim, kernel_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        patch_grids: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, N, D), patch_grids (B, 2) -> ((B, N, D), attention weights or None)."""
        if patch_grids is None:
            raise ValueError("GLPE attention needs each image's patch grid: run it inside a tower set up by "
                             "install_encoder_options, which passes spatial_shapes down as patch_grids")
        input_shape = hidden_states.shape[:-1]
        heads_shape = (*input_shape, -1, self.head_dim)
        queries = self.q_proj(hidden_states).view(heads_shape).transpose(1, 2)  # (B, H, N, d)
        keys = self.k_proj(hidden_states).view(heads_shape).transpose(1, 2)  # (B, H, N, d)
        values_flat = self.v_proj(hidden_states)  # (B, N, D)
        values = values_flat.view(heads_shape).transpose(1, 2)  # (B, H, N, d)
        attend: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation,
                                                                 eager_attention_forward)
        out, weights = attend(
            self, queries, keys, values, attention_mask, is_causal=False, scaling=self.scale,
            dropout=0.0 if not self.training else self.dropout,
        )
        out = out.reshape(*input_shape, -1).contiguous()  # (B, N, D), heads concatenated as SigLIP2 does
        return self.out_proj(out + self.lpe(values_flat, patch_grids)), weights


def _pass_patch_grids(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook of the tower: hand ``spatial_shapes`` (keyword or third positional) to the layers."""
    shapes = kwargs["spatial_shapes"] if "spatial_shapes" in kwargs else args[2]
    return args, {**kwargs, "patch_grids": shapes}


def install_encoder_options(tower: Siglip2VisionModel, *, dual_patch_norm: bool, glpe: bool) -> Siglip2VisionModel:
    """Install the options that are on into ``tower`` in place (idempotent); an installed option that is off is an
    error, since the tower's weights would then not match its config."""
    emb = tower.embeddings
    has_dpn, has_glpe = isinstance(emb.patch_embedding, DualPatchNorm), isinstance(emb, GlobalPositionEmbeddings)
    for name, wanted, present in (("vision_dual_patch_norm", dual_patch_norm, has_dpn),
                                  ("vision_glpe", glpe, has_glpe)):
        if present and not wanted:
            raise ValueError(f"the vision tower already has {name} installed but the config has {name}=False")
    if dual_patch_norm and not has_dpn:
        emb.patch_embedding = DualPatchNorm(emb.patch_embedding, eps=tower.config.layer_norm_eps)
    if glpe and not has_glpe:
        tower.embeddings = GlobalPositionEmbeddings(emb)
        for layer in tower.encoder.layers:
            layer.self_attn = LocalPositionAttention(layer.self_attn)
        tower.register_forward_pre_hook(_pass_patch_grids, with_kwargs=True)
    return tower


def init_encoder_options(tower: nn.Module) -> None:
    """Zero the GLPE convs that were not loaded from a checkpoint (transformers flags loaded tensors). transformers
    initialises the tower's modules with SigLIP2's ``_init_weights``, which leaves them alone (it does give DPN's
    LayerNorms ones and zeros), so the owning model calls this from its ``initialize_weights``."""
    for module in tower.modules():
        if isinstance(module, GridDepthwiseConv):
            module.reset_parameters()
