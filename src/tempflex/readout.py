"""WordReadout: a visual item's tokens say one soft word of the LLM's own vocabulary, added to every token.

Not in the TempFlex paper; off by default (``TempFlexConfig.merger_word_readout``). It is what lets tempflex-tiny's
from-scratch encoder talk to a *frozen* small LLM (docs/tempflex_tiny.md, findings 11-12): with the right answer's
input embedding written into every visual token, the frozen Gemma3-270M picks the right option of 88 % of 150 probe
questions, while no merger trained through it learned to make itself read. The readout pools an item's merged tokens
(attention pooling with a learned query), maps the pooled vector to logits over the LLM's vocabulary through the
LLM's own embedding table (as a tied LM head reads its hidden state), and adds the softmax-weighted mix of the input
embeddings, scaled as the LLM scales text, to each token. When the readout is sure, every token carries a real word
embedding; the merger's own tokens stay in the sum, so the LLM sees the word and the place.

Shapes: V merged tokens of one item, E LLM width, W vocabulary size.
"""

from __future__ import annotations

import torch
from torch import nn


class WordReadout(nn.Module):
    def __init__(self, width: int, hidden: int = 256, top: int = 64) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.key = nn.Linear(width, width, bias=False)
        self.query = nn.Parameter(torch.zeros(width))  # zero: mean pooling at insertion
        self.down = nn.Linear(width, hidden)
        self.time = nn.GRU(hidden, hidden, batch_first=True)  # reads the frames in order: motion has a direction
        self.say = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, width))
        self.top = top  # the word mixes the `top` likeliest words (the rest hold ~0 of the softmax)

    def forward(self, items: list[torch.Tensor], embed: nn.Embedding) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each item's tokens (F, T, E) and the LLM's input embedding module -> each item's tokens + its word
        (F, T, E), and the logits (N, W). The N items share one pass over the table (that pass is bound by reading
        the table: one pass per item cost 6 s a step of 32 videos)."""
        summaries = []
        for tokens in items:
            x = self.norm(tokens)  # (F, T, E)
            weights = torch.softmax(self.key(x) @ self.query / x.shape[-1] ** 0.5, dim=1)  # (F, T)
            frames = torch.einsum("ft,fte->fe", weights, x)  # (F, E), each frame pooled over its tokens
            _, last = self.time(self.down(frames)[None])  # (1, 1, hidden)
            summaries.append(last[0, 0])
        table = embed.weight  # (W, E), unscaled; Gemma3 multiplies by sqrt(E) in its forward (embed_scale)
        logits = self.say(torch.stack(summaries)).to(table.dtype) @ table.T  # (N, W)
        top = logits.topk(min(self.top, logits.shape[-1]), dim=-1)  # (N, k)
        mix = torch.softmax(top.values.float(), dim=-1).to(table.dtype)  # (N, k)
        scale = getattr(embed, "embed_scale", 1.0)
        words = torch.einsum("nk,nke->ne", mix, table[top.indices]) * scale  # (N, E)
        return [t + w.to(t.dtype) for t, w in zip(items, words)], logits
