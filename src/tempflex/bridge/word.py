"""WordBridge: a visual item's tokens say one soft word of the LLM's own vocabulary, added to every token.

Not in the TempFlex paper; off unless ``TempFlexConfig.bridge`` is set. It is what lets tempflex-tiny's from-scratch
encoder talk to a *frozen* small LLM: with the right answer's input embedding written into every visual token, the
frozen Gemma3-270M picks the right option, while no merger trained through the frozen LLM alone learned to make
itself read (docs/tempflex_tiny.md).

The bridge reads each item's merged tokens (F, T, E): a frame is pooled (attention pooling with a learned query) or,
with ``slots``, its first S tokens are kept apart (where a thing is survives); the frames are standardised over the
batch (BatchNorm: at first frames differ by a tenth of what they share) and read in order by a GRU (motion has a
direction) or, with ``span``, resampled to K time steps and read at once by one linear layer. The summary says a
vector whose cosine with each row of the LLM's embedding table, times a learned sharpness, gives logits over the
vocabulary, as a tied LM head reads a hidden state; the softmax mix of the ``top`` likeliest words' input embeddings,
scaled as the LLM scales text, is added to every token of the item.

With ``query`` the bridge also reads the prompt (``prompt_queries``: the mean input embedding of the prompt's text
outside the media) and lets it scale and shift the summary (FiLM, zero at insertion), so the word can depend on the
question ("which colour appears first" or "last"), as InstructBLIP's Q-Former reads the instruction. The query is
normalised per prompt (``query_norm="layer"``) or each feature over the batch's prompts (``"batch"``, running
statistics in eval mode): prompts share most of their text, and "first" against "last" is one token of ~40.

The bridge owns its prompt queries and can read any subset of an item's tokens (``read``), so that a token budget
keeps nothing of a dropped token (``TempFlexForConditionalGeneration.apply_bridge``).

Shapes: B prompts, L text length, N items, F frames, T merged tokens per frame, V tokens, E LLM width, W vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from tempflex.bridge.config import WordBridgeConfig
from tempflex.errors import PlaceholderMismatchError


class WordBridge(nn.Module):
    def __init__(self, width: int, config: WordBridgeConfig, merge_size: int = 2) -> None:
        super().__init__()
        self.merge_size = merge_size  # the merger's window side: an item of grid (F, h, w) has h*w/s^2 tokens a frame
        hidden, top, query, slots = config.hidden, config.top, config.query, config.slots
        slot_width, span, query_norm = config.slot_width, config.span, config.query_norm
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
        # frames differ little at first (a common part ~10x their differences):
        # standardising each feature over the batch's frames lets the readout see the differences from the start
        self.standardise = nn.BatchNorm1d(read)
        self.down = nn.Linear(read, hidden)
        # reads the frames in order (motion has a direction), unless the span reads them at once
        self.time = None if span else nn.GRU(hidden, hidden, batch_first=True)
        self.say = nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, width))
        self.sharpness = nn.Parameter(torch.tensor(40.0))  # logits = sharpness * cos(said vector, word row)
        self.top = top  # the word mixes the `top` likeliest words (the rest hold ~0 of the softmax)
        self._row_norms: tuple[tuple, torch.Tensor] | None = None  # (the table's identity, its rows' norms)
        # the prompt's mean embedding (E) -> a scale and a shift of the summary (2 * hidden), FiLM; normalised per
        # prompt, or per feature over the batch's prompts (their shared text removed: "first" and "last" differ by
        # one token of ~40)
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
        logits = self.sharpness.clamp(1, 100) * (said @ table.T) / self.row_norms(table)  # (N, W)
        top = logits.topk(min(self.top, logits.shape[-1]), dim=-1)  # (N, k)
        mix = torch.softmax(top.values.float(), dim=-1).to(table.dtype)  # (N, k)
        scale = getattr(embed, "embed_scale", 1.0)
        return torch.einsum("nk,nke->ne", mix, table[top.indices]) * scale, logits  # (N, E), (N, W)

    def row_norms(self, table: torch.Tensor) -> torch.Tensor:
        """The table's row norms (W,), clamped away from 0. Kept while the table is the same tensor at the same
        version and no gradient flows into it: a 262k-row table costs one more pass over it (~50 ms) each read,
        as much as the cosine itself. An in-place update (an optimizer step) bumps the version and so recomputes."""
        if table.requires_grad and torch.is_grad_enabled():
            return table.norm(dim=-1).clamp(min=1e-6)
        key = (table.data_ptr(), table._version, tuple(table.shape), table.dtype, table.device,
               torch.is_inference_mode_enabled())  # an inference-mode tensor cannot be saved for backward
        if self._row_norms is None or self._row_norms[0] != key:
            self._row_norms = key, table.detach().norm(dim=-1).clamp(min=1e-6)
        return self._row_norms[1]

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

    # -- the prompt -------------------------------------------------------------------------------------------------
    @property
    def reads_prompts(self) -> bool:
        """Whether the word depends on the prompt (``query``): only then are queries computed."""
        return self.ask is not None

    @staticmethod
    def prompt_queries(embeds: torch.Tensor, media: torch.Tensor, attention_mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Prompts embedded (B, L, E) with their visual placeholders (B, L) -> (B, E): each prompt's mean input
        embedding over its text outside the media, i.e. the tokens before the first and after the last placeholder
        (a video's inner frame separators and time tags lie between and are left out, so the query does not depend
        on the number of frames; its first tag and last separator count); the whole text when there is none."""
        place = torch.arange(media.shape[1], device=media.device).expand_as(media)  # (B, L)
        first = torch.where(media, place, media.shape[1]).amin(dim=1, keepdim=True)  # (B, 1); L when no media
        last = torch.where(media, place, -1).amax(dim=1, keepdim=True)  # (B, 1); -1 when no media
        keep = (place < first) | (place > last)  # (B, L)
        if attention_mask is not None:
            keep &= attention_mask.bool()
        weights = keep.to(embeds.dtype)
        return (embeds * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1)  # (B, E)

    @staticmethod
    def item_queries(queries: torch.Tensor, placeholders: list[int], sizes: list[int]) -> torch.Tensor:
        """Each prompt's query (B, E), its placeholder count (B,) and each item's token count (N,) -> each item's
        query (N, E): items fill the prompts' placeholders in order."""
        owner, row, used = [], 0, 0
        for size in sizes:
            while row < len(placeholders) and used >= placeholders[row]:
                row, used = row + 1, 0
            if row == len(placeholders):
                raise PlaceholderMismatchError(f"the prompts have {sum(placeholders)} placeholder tokens, fewer than "
                                               f"the {sum(sizes)} visual tokens of the media")
            owner.append(row)
            used += size
        return queries[owner]

    # -- applying it ------------------------------------------------------------------------------------------------
    def items(self, tokens: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
        """Merged tokens (V, E) of N items with grids (N, 3) in patches -> per item (F, T, E)."""
        shapes = [(f, h * w // self.merge_size**2) for f, h, w in torch.as_tensor(grid_thw).tolist()]
        parts = tokens.split([f * t for f, t in shapes])
        return [part.view(f, t, -1) for part, (f, t) in zip(parts, shapes)]  # (F, T, E) each

    def apply(self, tokens: torch.Tensor, grid_thw: torch.Tensor, embed: nn.Embedding,
              queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every merged token (V, E) of N items with grids (N, 3) (and each item's query (N, E)) -> the tokens
        with each item's word added (V, E), and the logits (N, W)."""
        items, logits = self(self.items(tokens, grid_thw), embed, queries=queries)
        return torch.cat([t.flatten(0, 1) for t in items], dim=0), logits

    def read(self, tokens: torch.Tensor, frames: torch.Tensor, embed: nn.Embedding, query: torch.Tensor | None = None,
             places: torch.Tensor | None = None) -> torch.Tensor:
        """Some merged tokens (V, E) of one video with their frame indices (V,) in non-decreasing order (the prompt's
        query (E,); each token's place on its frame's merged grid (V,), row * w + col, increasing within a frame)
        -> (V, E) with the word read from exactly these tokens, as if the video had been only these: frames without
        tokens are skipped, a frame's dropped places are masked (without ``places`` its tokens take the first
        places). With every token of the video, equal to ``apply``."""
        if not len(tokens):
            return tokens
        return self.read_many([(tokens, frames, places)], embed, None if query is None else query[None])[0]

    def read_many(self, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], embed: nn.Embedding,
                  queries: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``read`` for N token sets at once, each (tokens (V_i, E), frames (V_i,), places (V_i,) or None) with its
        own query (N, E): one pass over the embedding table for all. In eval mode each result equals its own
        ``read`` (the batch norms use running statistics); in training mode the batch's statistics mix them."""
        padded, masks, places = [], [], []
        for tokens, frames, where in parts:
            if not len(tokens):
                raise ValueError("read_many takes token sets of at least one token each")
            if bool((frames[1:] < frames[:-1]).any()):
                raise ValueError("the bridge reads tokens in frame order")
            _, rank, counts = torch.unique_consecutive(frames, return_inverse=True, return_counts=True)  # (V,), (F',)
            if where is None:  # each frame's tokens in the first places
                starts = (counts.cumsum(0) - counts).repeat_interleave(counts)  # (V,) each token's frame's first index
                where = torch.arange(len(frames), device=frames.device) - starts
            at = rank.to(tokens.device), where.long().to(tokens.device)
            item = tokens.new_zeros(len(counts), int(where.max()) + 1, tokens.shape[-1])  # (F', T, E)
            item[at] = tokens
            mask = torch.zeros(item.shape[:2], dtype=torch.bool, device=tokens.device)  # (F', T)
            mask[at] = True
            padded.append(item), masks.append(mask), places.append(at)
        read, _ = self(padded, embed, masks, queries)  # each (F', T, E), through forward so hooks see it
        return [r[at] for r, at in zip(read, places)]  # each (V_i, E): each kept token plus its set's word
