"""``BudgetPipeline``: a clip and a prompt -> LLM inputs that cost at most ``budget`` tokens.

Shapes: T frames, N encoded tokens, V kept tokens, L prompt length, E LLM width.

``prepare`` selects frames (optional), encodes every kept frame (``processor.encode_media`` then
``model.get_video_features``), asks the model for segment relevance when the reducer is query-aware, reduces the
tokens, writes the prompt with exactly the kept tokens per frame, embeds it and splices the kept tokens in.
``plan`` stops before a model's optional bridge; ``finish`` bridges and embeds several plans in one read of
the LLM's embedding table (``prepare`` is one plan, finished).

The guarantee: visual tokens + time-tag tokens (+ frame separators with ``count_separators``) <= budget. The tags
depend on which frames keep tokens, so the reducer first gets budget minus the tags of every frame (safe: fewer
frames never cost more), or, when those tags alone exceed the budget, budget // (1 + the dearest frame's tags)
(safe: each kept token opens at most one frame). The tags actually spent are then counted and the freed tokens
offered to the reducer again, a few times, keeping only results that fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tempflex.budget.base import (
    BudgetError,
    FrameSelector,
    QueryAwareReducer,
    TimestampEncoder,
    TokenReducer,
    VisualTokens,
)
from tempflex.budget.prompt import bridged_many, build_prompt, frame_tags, splice, split_template
from tempflex.budget.relevance import segment_relevance
from tempflex.budget.selectors import UniformFrames
from tempflex.budget.spec import BudgetSpec
from tempflex.budget.timestamps import FrameTags, NoTags
from tempflex.media import VideoClip, as_clip
from tempflex.processing import VIDEO_PLACEHOLDER

REFINE_STEPS = 4  # extra reducer calls that try to spend the tag tokens a reduction freed


@torch.no_grad()
def encode_clip(model: Any, processor: Any, clip: VideoClip) -> VisualTokens:
    """Every frame of ``clip`` through the encoder, TFF and merger: (T*h*w, E) tokens with their places, before a
    model's optional bridge (``bridged`` applies it to the kept ones)."""
    media = processor.encode_media(videos=[clip])
    data = media.tensors()
    pixels = data["pixel_values_videos"].to(model.device, model.dtype)  # (T*H*W patches, K)
    features = model.get_video_features(pixels, data["video_grid_thw"])  # (T*h*w, E)
    return VisualTokens.from_features(features, media.video_grids[0], processor.settings.merge_size, clip.timestamps)


def remembered(memo: dict, key: tuple, compute: Callable[[], Any]) -> tuple[Any, float]:
    """(value, 0.0) computed now and kept in ``memo`` under ``key``, or (value, the seconds it took) from ``memo``."""
    if key in memo:
        value, seconds = memo[key]
        return value, seconds
    start = time.perf_counter()
    value = compute()
    memo[key] = value, time.perf_counter() - start
    return value, 0.0


def fit(tokens: VisualTokens, reduce: Callable[[int], VisualTokens], budget: int,
        overhead: Callable[[VisualTokens], int]) -> VisualTokens:
    """The reduction whose visual tokens plus ``overhead`` (text tokens of the frames it keeps) fit ``budget``."""
    dearest = max(overhead(tokens.select(torch.nonzero(tokens.positions[:, 0] == t).flatten()[:1]))
                  for t in tokens.positions[:, 0].unique().tolist())
    if budget < 1 + dearest:
        raise BudgetError(f"budget {budget} is below the minimum {1 + dearest}: one visual token plus the "
                          f"{dearest} text tokens (time tag, separator) of its frame")
    everything = overhead(tokens)
    visual = budget - everything if budget - everything >= 1 else budget // (1 + dearest)
    best = _checked(reduce, visual)
    low, high = visual, budget + 1  # largest visual budget that fitted, smallest that did not
    for _ in range(REFINE_STEPS):
        candidate = budget - overhead(best)  # what the kept frames' text actually leaves
        if candidate >= high:
            candidate = (low + high) // 2
        if candidate <= low:
            break
        out = _checked(reduce, candidate)
        if len(out) + overhead(out) <= budget:
            low, best = candidate, out if len(out) >= len(best) else best
        else:
            high = candidate
    if len(best) + overhead(best) > budget:  # only a plug-in that breaks its contract gets here
        raise BudgetError(f"internal: {len(best)} tokens + {overhead(best)} text tokens exceed budget {budget}")
    return best


def _checked(reduce: Callable[[int], VisualTokens], visual: int) -> VisualTokens:
    out = reduce(visual)
    if len(out) > visual:
        raise BudgetError(f"the reducer kept {len(out)} tokens for a budget of {visual}")
    return out


@dataclass
class BudgetPipeline:
    """Frame selection, encoding, reduction and prompt assembly under one token budget."""

    reducer: TokenReducer  # keeps at most the visual budget of the encoded tokens
    budget: int  # most tokens the video may cost the LLM: visual + time tags (+ separators if counted)
    selector: FrameSelector | None = None  # frames to encode; None: every frame of the clip (or uniform if frames)
    frames: int | None = None  # frames the selector keeps; None: all
    timestamps: TimestampEncoder | None = None  # None: the processor's choice (frame tags iff video_timestamps)
    count_separators: bool = False  # charge the one separator token per kept frame to the budget as well
    relevance_batch: int = 8  # segments per forward pass when a query-aware reducer asks for relevance

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise BudgetError(f"budget must be a positive number of tokens, got {self.budget!r}")
        if self.frames is not None and (isinstance(self.frames, bool) or self.frames < 1):
            raise BudgetError(f"frames must be a positive number of frames, got {self.frames!r}")
        if not isinstance(self.reducer, TokenReducer):
            raise BudgetError(f"reducer must implement TokenReducer.reduce, got {type(self.reducer).__name__}")
        if self.frames is not None and self.selector is None:
            self.selector = UniformFrames()

    @classmethod
    def from_spec(cls, spec: str | dict | BudgetSpec) -> BudgetPipeline:
        """From a spec string (``"flux:1024,groups=4"``), dict or ``BudgetSpec``; see ``tempflex.budget.spec``."""
        if isinstance(spec, str):
            spec = BudgetSpec.parse(spec)
        elif isinstance(spec, dict):
            spec = BudgetSpec.from_dict(spec)
        return cls(**spec.components())

    def encoder(self, processor: Any) -> TimestampEncoder:
        if self.timestamps is not None:
            return self.timestamps
        return FrameTags() if processor.settings.video_timestamps else NoTags()

    def select_frames(self, clip: VideoClip, prompt: str) -> tuple[VideoClip, list[int]]:
        if self.selector is None:
            return clip, list(range(clip.num_frames))
        available = clip.timestamps if clip.timestamps is not None else clip.num_frames
        index = self.selector.select(available, self.frames or clip.num_frames, frames=clip.frames, query=prompt)
        times = None if clip.timestamps is None else [clip.timestamps[i] for i in index]
        return VideoClip(clip.frames[index], times), index

    @torch.no_grad()
    def prepare(self, model: Any, processor: Any, clip: Any, prompt: str,
                query: str | None = None, memo: dict | None = None) -> tuple[dict, dict]:
        """(inputs, info): inputs ``input_ids``, ``attention_mask`` (1, L) and ``inputs_embeds`` (1, L, E) for
        ``model(**inputs)`` or ``generate``; info says what was spent (see docs/budget.md). ``clip`` is a
        ``VideoClip``, a ``load_video`` result or (T, H, W, 3) uint8 frames; ``prompt`` the user's text, with or
        without a ``<video>`` placeholder (put in front if missing); ``query`` the bare question that relevance
        scoring asks about (default: the prompt without its placeholder; pass it when the prompt also carries
        options or instructions). ``memo``: a dict the caller keeps for one clip (and model) across pipelines,
        which reuse its encoded frames and relevance scores (keyed by the frames, segments, question and time
        tags); ``info["reused_seconds"]`` is what those reused stages took when first computed."""
        return finish(model, processor, [self.plan(model, processor, clip, prompt, query, memo)])[0]

    @torch.no_grad()
    def plan(self, model: Any, processor: Any, clip: Any, prompt: str,
             query: str | None = None, memo: dict | None = None) -> PlannedPrompt:
        """``prepare`` up to the model's optional bridge: the kept tokens and their prompt. ``finish`` bridges and
        embeds several plans (other pipelines' on the same clip, say) in one read of the LLM's embedding table."""
        prefix, suffix = split_template(processor, prompt)  # a bad prompt fails before any encoding
        clip, index = self.select_frames(as_clip(clip), prompt)
        memo = {} if memo is None else memo
        tokens, reused = remembered(memo, ("tokens", tuple(index)), lambda: encode_clip(model, processor, clip))
        encoder, tok = self.encoder(processor), processor.tokenizer
        relevance = None
        if isinstance(self.reducer, QueryAwareReducer):
            question = (query or prompt.replace(VIDEO_PLACEHOLDER, "")).strip()
            segments = self.reducer.segments(tokens.frames)
            key = ("relevance", tuple(index), tuple((s.start, s.stop) for s in segments), question, repr(encoder))
            relevance, seconds = remembered(memo, key, lambda: segment_relevance(
                model, processor, tokens, segments, question, timestamps=encoder, batch_size=self.relevance_batch))
            reused += seconds

        def overhead(kept: VisualTokens) -> int:
            separators = int((kept.tokens_per_frame() > 0).sum()) if self.count_separators else 0
            return encoder.count(tok, frame_tags(encoder, kept)) + separators

        def reduce(visual: int) -> VisualTokens:
            try:
                return self.reducer.reduce(tokens, visual, scores=relevance)
            except BudgetError as err:
                raise BudgetError(f"budget {self.budget} leaves {visual} visual tokens: {err}") from err

        kept = fit(tokens, reduce, self.budget, overhead)
        per_frame = kept.tokens_per_frame().tolist()
        built = build_prompt(processor, prefix, suffix, per_frame, frame_tags(encoder, kept))
        if built.visual_tokens != len(kept):
            raise BudgetError(f"internal: {built.visual_tokens} placeholders for {len(kept)} kept tokens")
        separators = built.separator_tokens if self.count_separators else 0
        total = built.visual_tokens + built.tag_tokens + separators
        if total > self.budget:  # only a timestamp encoder whose count() disagrees with its tags' ids gets here
            raise BudgetError(f"internal: the prompt spends {total} tokens, over the budget {self.budget}")
        info = {
            "budget": self.budget,
            "visual_tokens": built.visual_tokens,
            "tag_tokens": built.tag_tokens,
            "separator_tokens": built.separator_tokens,
            "total": total,  # visual + tags (+ separators when counted): <= budget
            "encoded_tokens": len(tokens),
            "frames": index,  # indices of the encoded frames in the given clip
            "tokens_per_frame": per_frame,  # per encoded frame
            "positions": kept.positions.tolist(),  # (t, row, col) of every kept token, in prompt order
            "timestamps": kept.timestamps.tolist(),
            "relevance": None if relevance is None else relevance.tolist(),
            "text": built.text,
            "reused_seconds": reused,
        }
        return PlannedPrompt(kept, built.input_ids, info)


@dataclass(frozen=True)
class PlannedPrompt:
    """One prompt before the bridge: the kept tokens (before a model's bridge), the prompt ids (L,) and the info
    ``prepare`` returns."""

    kept: VisualTokens
    input_ids: torch.Tensor
    info: dict


@torch.no_grad()
def finish(model: Any, processor: Any, plans: list[PlannedPrompt]) -> list[tuple[dict, dict]]:
    """Each plan's (inputs, info) as ``prepare`` returns them (``prepare`` is one plan, finished): a model's bridge
    reads every plan's kept tokens and prompt in one pass (``bridged_many``; together, each plan's result equals
    its own to float rounding), then the prompt is embedded and the kept tokens spliced in."""
    kept = bridged_many(model, [p.kept for p in plans], [p.input_ids for p in plans])
    out = []
    for plan, tokens in zip(plans, kept):
        ids = plan.input_ids.unsqueeze(0).to(model.device)  # (1, L)
        embeds = splice(model, ids, tokens.tokens, processor.video_token_id)  # (1, L, E)
        out.append(({"input_ids": ids, "attention_mask": torch.ones_like(ids), "inputs_embeds": embeds}, plan.info))
    return out
