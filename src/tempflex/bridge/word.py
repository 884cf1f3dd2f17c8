"""WordReadout: a visual item's tokens say one soft word of the LLM's own vocabulary, added to every token.

Not in the TempFlex paper; off by default (``TempFlexConfig.merger_word_readout``). It is what lets tempflex-tiny's
from-scratch encoder talk to a *frozen* small LLM (docs/tempflex_tiny.md, findings 11-12): with the right answer's
input embedding written into every visual token, the frozen Gemma3-270M picks the right option of 88 % of 150 probe
questions, while no merger trained through it learned to make itself read.

The readout pools each frame's merged tokens (attention pooling with a learned query), standardises the frames over
the batch (BatchNorm: at first frames differ by a tenth of what they share), reads them in order with a GRU (motion
has a direction), and maps the last state to logits over the LLM's vocabulary: a sharpness times the cosine with
each row of the LLM's own embedding table, as a tied LM head reads a hidden state. The softmax mix of the
`top` likeliest words' input embeddings, scaled as the LLM scales text, is added to every token of the item. When
the readout is sure, every token carries a real word embedding; the merger's own tokens stay in the sum.

With ``query=True`` the readout also reads the prompt (``TempFlexForConditionalGeneration.prompt_queries``: the
mean input embedding of the prompt's text outside the media) and lets it scale and shift the GRU's summary (FiLM,
zero at insertion), so the word can depend on the question ("which colour appears first" or "last"), as
InstructBLIP's Q-Former reads the instruction. Without a query it says what it would for no question. The query is
normalised per prompt (``query_norm="layer"``) or each feature over the batch's prompts (``"batch"``, running
statistics in eval mode): prompts share most of their text, and "first" against "last" is one token of ~40, which
the per-prompt norm left unheard (docs/tempflex_tiny.md, findings 25-26).

With ``slots=S`` a frame is not pooled: each of its first S tokens (row-major on the merged grid; a frame of more
tokens is averaged down to S in order, missing or masked ones are zeros) is projected to a few features and the
frame is their concatenation, so where a thing is within the frame survives into the GRU, as stage 0's head keeps
every token apart (``tempflex.train.warmup.OptionHead``). Direction of motion is a where-question; attention pooling
averaged it away (docs/tempflex_tiny.md, finding 21).

With ``span=K`` the frames are not read by a GRU: the video's frame features are resampled to K time steps
(averaged in runs, or repeated when there are fewer frames) and one linear layer reads all of them at once (the
BatchNorm then standardises over the batch's videos, the query's FiLM acts on that summary), again as stage 0's head
reads a video; the GRU, trained on the frozen encoder, lost most of what that head finds
(periodic 0.89 -> 0.29, speed change 0.97 -> 0.41 on the seed-1 test split, finding 21).

Shapes: N items, F frames, T merged tokens per frame, E LLM width, W vocabulary size.
"""

from __future__ import annotations

import torch
from torch import nn


class WordReadout(nn.Module):
    def __init__(self, width: int, hidden: int = 256, top: int = 64, query: bool = False, slots: int = 0,
                 slot_width: int = 64, span: int = 0, query_norm: str = "layer") -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.slots = slots
        # a frame is either pooled over its tokens (attention pooling with a learned query) or, with slots, the
        # concatenation of its first S tokens, each projected E -> slot_width
        self.key = None if slots else nn.Linear(width, width, bias=False)
        self.query = None if slots else nn.Parameter(torch.zeros(width))  # zero: mean pooling at insertion
        self.place = nn.Linear(width, slot_width) if slots else None
        frame = slots * slot_width if slots else width
        self.span = span
        read = span * frame if span else frame  # a video at K time steps read at once, or one frame at a time
        # frames differ little at first (a common part ~10x their differences, docs/tempflex_tiny.md finding 8):
        # standardising each feature over the batch's frames lets the readout see the differences from the start
        self.standardise = nn.BatchNorm1d(read)
        self.down = nn.Linear(read, hidden)
        # reads the frames in order (motion has a direction), unless the span reads them at once
        self.time = None if span else nn.GRU(hidden, hidden, batch_first=True)
        self.say = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, width))
        self.sharpness = nn.Parameter(torch.tensor(40.0))  # logits = sharpness * cos(said vector, word row)
        self.top = top  # the word mixes the `top` likeliest words (the rest hold ~0 of the softmax)
        # the prompt's mean embedding (E) -> a scale and a shift of the summary (2 * hidden), FiLM; normalised per
        # prompt, or per feature over the batch's prompts (their shared text removed: "first" and "last" differ by
        # one token of ~40, findings 25-26)
        norm = nn.BatchNorm1d(width) if query_norm == "batch" else nn.LayerNorm(width)
        self.ask = nn.Sequential(norm, nn.Linear(width, 2 * hidden)) if query else None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The state at insertion: every submodule's own reset, mean pooling, sharpness 40 (a cosine logit range
        that lets one word of 262k take most of the softmax), no effect of the query."""
        asking = [] if self.ask is None else list(self.ask)
        framing = [self.place] if self.slots else [self.key]
        timing = [] if self.time is None else [self.time]
        for module in (self.norm, *framing, self.standardise, self.down, *timing, *self.say, *asking):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.query is not None:
            self.query.zero_()
        self.sharpness.fill_(40.0)
        if self.ask is not None:
            nn.init.zeros_(self.ask[1].weight)
            nn.init.zeros_(self.ask[1].bias)

    def forward(self, items: list[torch.Tensor], embed: nn.Embedding, masks: list[torch.Tensor] | None = None,
                queries: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each item's tokens (F, T, E) and the LLM's input embedding module -> each item's tokens + its word
        (F, T, E), and the logits (N, W). ``masks`` (F, T) bool per item mark the real tokens of frames padded to
        T (every frame needs at least one); pooling ignores the rest. ``queries`` (N, E): each item's prompt, read
        when the readout was built with ``query=True``. The N items share one pass over the table (that pass is
        bound by reading the table: one pass per item cost 6 s a step of 32 videos)."""
        words, logits = self.words(items, embed, masks, queries)  # (N, E), (N, W)
        return [t + w.to(t.dtype) for t, w in zip(items, words)], logits

    def words(self, items: list[torch.Tensor], embed: nn.Embedding, masks: list[torch.Tensor] | None = None,
              queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The word each item says, scaled like the LLM's text embeddings (N, E), and the logits (N, W)."""
        frames = [self._frames(tokens, None if masks is None else masks[i]) for i, tokens in enumerate(items)]
        if self.span:  # each video at K time steps, read at once: (N, K * D) -> (N, hidden)
            spans = [nn.functional.adaptive_avg_pool1d(f.T[None], self.span)[0].T.flatten() for f in frames]
            summaries = nn.functional.gelu(self.down(self.standardise(torch.stack(spans))))
        else:
            frames = self.down(self.standardise(torch.cat(frames))).split([len(t) for t in items])  # (F, hidden)
            summaries = torch.stack([self.time(f[None])[1][0, 0] for f in frames])  # (N, hidden), last GRU state
        if self.ask is not None and queries is not None:
            if queries.shape[0] != len(items):
                raise ValueError(f"{queries.shape[0]} queries for {len(items)} visual items")
            scale, shift = self.ask(queries.to(summaries.dtype)).chunk(2, dim=-1)  # (N, hidden) each
            summaries = summaries * (1 + scale) + shift
        table = embed.weight  # (W, E), unscaled; Gemma3 multiplies by sqrt(E) in its forward (embed_scale)
        said = nn.functional.normalize(self.say(summaries), dim=-1).to(table.dtype)  # (N, E)
        # cosine with each row: divide the dot products by the rows' norms (W,) rather than normalise a copy of the
        # table (a 262k x 640 copy cost 0.3 s a call, most of `ask`'s visual path)
        logits = self.sharpness.clamp(1, 100) * (said @ table.T) / table.norm(dim=-1).clamp(min=1e-6)  # (N, W)
        top = logits.topk(min(self.top, logits.shape[-1]), dim=-1)  # (N, k)
        mix = torch.softmax(top.values.float(), dim=-1).to(table.dtype)  # (N, k)
        scale = getattr(embed, "embed_scale", 1.0)
        return torch.einsum("nk,nke->ne", mix, table[top.indices]) * scale, logits  # (N, E), (N, W)

    def _frames(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One item's tokens (F, T, E) and mask (F, T) -> its frames' features: (F, E) pooled over each frame's
        tokens, or with slots (F, S * slot_width), the tokens kept apart in order."""
        x = self.norm(tokens)  # (F, T, E)
        if not self.slots:
            scores = self.key(x) @ self.query / x.shape[-1] ** 0.5  # (F, T)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            return torch.einsum("ft,fte->fe", torch.softmax(scores, dim=1), x)  # (F, E)
        x = self.place(x)  # (F, T, p)
        if mask is not None:
            x = x * mask[..., None].to(x.dtype)
        count = x.shape[1]
        if count > self.slots:  # more tokens than slots: average runs of neighbours down to S, in order
            x = nn.functional.adaptive_avg_pool1d(x.transpose(1, 2), self.slots).transpose(1, 2)  # (F, S, p)
        elif count < self.slots:
            x = nn.functional.pad(x, (0, 0, 0, self.slots - count))  # (F, S, p)
        return x.flatten(1)  # (F, S * p)
