"""The options objective's loss terms besides the head's cross-entropy (weights in the recipe's ``warmup`` block).

- ``variance``: VICReg's variance hinge (Bardes et al., 2022) on the merged tokens, with the LLM's embedding spread
  as its target.
- ``said``: every merged token of a video drawn to the frozen LLM's input embedding of the token it answers the
  record's question with, squared distance in units of the LLM's embedding spread.

Shapes: B videos, V merged tokens per video, E LLM width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_


def said_distance(tokens: torch.Tensor, said: torch.Tensor, spread: float) -> torch.Tensor:
    """Mean squared distance of every merged token to its video's answer token embedding, per dimension, in units
    of the LLM's embedding spread: tokens (B, V, E), said (B, E) -> scalar (0 when every token is the word)."""
    return (tokens - said[:, None]).pow(2).mean() / spread**2


def embedding_spread(model, sample: int = 4096) -> float:
    """RMS over dimensions of the per-dimension std of the LLM's input embeddings (Gemma3-270M: 0.92): how much
    tokens the LLM reads differ from each other, in its own units."""
    table = model.get_input_embeddings()
    ids = torch.linspace(0, table.num_embeddings - 1, min(sample, table.num_embeddings)).long()
    with torch.no_grad():
        return float(table(ids).std(0).pow(2).mean().sqrt())


def variance_hinge(tokens: torch.Tensor, target: float) -> torch.Tensor:
    """VICReg's variance term: mean over dimensions of relu(target - std over the batch's tokens); tokens (B, V, E)."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    return F_.relu(target - (flat.var(0) + 1e-4).sqrt()).mean()

