"""The options objective's head: a classifier over every option text of the training records, read from all of a
video's merged tokens in order and conditioned on the question; thrown away after training (the encoder, TFF and
merger keep what they learned). Also the visual path as the objective runs it (``visual_tokens``) and the head's
accuracy per skill (``option_accuracy``).

Standardising the head's input over the batch (BatchNorm) cut the plateau before learning starts from ~100 steps to
~25 on the probes (docs/tempflex_tiny.md).

Shapes: B videos, V merged tokens per video, E LLM width, K options, W the LLM's vocabulary.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from tempflex.train.objectives.option_data import OptionBatchSource
from tempflex.train.params import train_mode


class OptionHead(nn.Module):
    """A classifier over every option text of the training records, read from all of a video's merged tokens
    in order (time and place matter), conditioned on the question; each record scores only its own options."""

    def __init__(self, width: int, tokens: int, vocab: int, project: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.project = nn.Linear(width, project)  # per token E -> p
        # batch statistics: a video's tokens are nearly the same for every video at initialisation (spread ~0.2 of
        # their mean); standardising each feature over the batch lets the head see the differences from step 1
        self.standardise = nn.BatchNorm1d(tokens * project)
        self.read = nn.Linear(tokens * project, hidden)
        self.ask = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.classify = nn.Sequential(nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, vocab))

    def forward(self, tokens: torch.Tensor, question: torch.Tensor, options: torch.Tensor,
                option_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, V, E), question (B, E), options (B, K) vocabulary ids, option_mask (B, K) -> logits (B, K)."""
        h = self.read(self.standardise(self.project(tokens).flatten(1))) + self.ask(question)  # (B, hidden)
        logits = self.classify(h).gather(1, options)  # (B, K)
        return logits.masked_fill(~option_mask, float("-inf"))


def visual_tokens(model, patches: torch.Tensor, grids: torch.Tensor, n: int, queries: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Packed patches of n equal-size videos (and their prompts' queries (n, E)) -> merged tokens (n, V, E), with
    the word of the model's bridge added, and the bridge's logits (n, W) (None without a bridge)."""
    tokens = model.get_visual_features(patches, grids, video=True)  # (n*V, E)
    logits = None
    if model.bridge is not None:
        tokens, logits = model.bridge.apply(tokens, grids, model.get_input_embeddings(), queries)
    return tokens.view(n, -1, model.config.text_config.hidden_size), logits


@torch.no_grad()
def option_accuracy(model, head: OptionHead, data: OptionBatchSource, batch: int = 64) -> dict[str, float]:
    """Accuracy of the head's choice per skill, and over all records ('all')."""
    model.eval(), head.eval()
    device = next(head.parameters()).device
    hits: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(data), batch):
        index = torch.arange(start, min(start + batch, len(data)))
        patches, grids, q, o, m, a, _, prompt = (None if t is None else t.to(device) for t in data.batch(index))
        logits = head(visual_tokens(model, patches, grids, len(index), prompt)[0], q, o, m)
        for i, ok in zip(index.tolist(), (logits.argmax(-1) == a).cpu().tolist()):
            hits[data.skills[i]].append(int(ok))
            hits["all"].append(int(ok))
    train_mode(model), head.train()
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}

