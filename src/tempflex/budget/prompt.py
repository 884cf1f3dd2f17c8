"""Prompt ids for a reduced video: exactly the kept tokens per frame, the frame separators, the time tags.

Shapes: T frames, V kept visual tokens, B prompts, L text length, E LLM width.

The layout is the processor's (``TempFlexProcessor._video_text``): per frame an optional tag, the frame's video
placeholder tokens, one separator; a frame that keeps no token is left out with its separator and tag. The ids
are built piece by piece (prefix text, each tag, placeholder ids, suffix text) rather than by tokenizing one long
string, so the tags' cost is exactly their own tokenization, the number the budget planned with; the tags sit
between special tokens, so for the usual tokenizers the ids equal the whole string's (a test checks ours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from tempflex.budget.base import BudgetError, TimestampEncoder, VisualTokens
from tempflex.errors import PlaceholderMismatchError
from tempflex.processing import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER


@dataclass(frozen=True)
class VideoPrompt:
    """One prompt's ids and what they spend."""

    input_ids: torch.Tensor  # (L,) long
    text: str  # the same prompt as text (placeholders written out), for logs
    visual_tokens: int  # video placeholder tokens, = kept visual tokens
    tag_tokens: int  # text tokens of the time tags
    separator_tokens: int  # one per frame that keeps tokens


def split_template(processor: Any, prompt: str) -> tuple[str, str]:
    """The chat-rendered user turn around its one ``<video>`` (put in front of ``prompt`` if it has none)."""
    if IMAGE_PLACEHOLDER in prompt:
        raise BudgetError(f"a budget prompt holds one video and no {IMAGE_PLACEHOLDER}")
    if prompt.count(VIDEO_PLACEHOLDER) > 1:
        raise BudgetError(f"a budget prompt holds one {VIDEO_PLACEHOLDER}, got {prompt.count(VIDEO_PLACEHOLDER)}")
    content = prompt if VIDEO_PLACEHOLDER in prompt else f"{VIDEO_PLACEHOLDER}\n{prompt}"
    text = processor.apply_chat_template([{"role": "user", "content": content}])
    if text.count(VIDEO_PLACEHOLDER) != 1:
        raise BudgetError(f"the chat template did not keep the {VIDEO_PLACEHOLDER} placeholder exactly once")
    prefix, suffix = text.split(VIDEO_PLACEHOLDER)
    return prefix, suffix


def frame_tags(encoder: TimestampEncoder, tokens: VisualTokens) -> list[str]:
    """(T,) tags for the frames that keep tokens, "" for the others."""
    per_frame = tokens.tokens_per_frame().tolist()
    times = tokens.frame_timestamps()
    kept = [t for t in range(tokens.frames) if per_frame[t]]
    tags = [""] * tokens.frames
    for t, text in zip(kept, encoder.tags([times[t] for t in kept])):
        tags[t] = text
    return tags


def build_prompt(processor: Any, prefix: str, suffix: str, per_frame: Sequence[int], tags: Sequence[str]) -> VideoPrompt:
    """Ids of ``prefix`` + per kept frame (tag, ``per_frame[t]`` placeholders, separator) + ``suffix``."""
    tok, s = processor.tokenizer, processor.settings

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"] if text else []

    ids, texts = encode(prefix), [prefix]
    visual = tag_count = frames = 0
    for count, tag in zip(per_frame, tags):
        if not count:
            continue
        tag_ids = encode(tag)
        ids += tag_ids + [processor.video_token_id] * count + [processor.frame_separator_token_id]
        texts.append(tag + s.video_token * count + s.frame_separator_token)
        visual, tag_count, frames = visual + count, tag_count + len(tag_ids), frames + 1
    ids += encode(suffix)
    texts.append(suffix)
    return VideoPrompt(torch.tensor(ids, dtype=torch.long), "".join(texts), visual, tag_count, frames)


def bridged(model: Any, tokens: VisualTokens, input_ids: torch.Tensor) -> VisualTokens:
    """``tokens`` as the model's optional bridge makes them from exactly these tokens and the prompt ``input_ids``
    (L,) they go into (``TempFlexForConditionalGeneration.apply_bridge``), so that nothing of a dropped token reaches
    the LLM through it; the same tokens for a model without a bridge."""
    places = tokens.positions[:, 1] * tokens.grid[1] + tokens.positions[:, 2]  # (V,) on each frame's grid
    out = model.apply_bridge(tokens.tokens, tokens.positions[:, 0], places=places, input_ids=input_ids)
    return tokens if out is tokens.tokens else replace(tokens, tokens=out)


def bridged_many(model: Any, parts: Sequence[VisualTokens], prompts: Sequence[torch.Tensor]) -> list[VisualTokens]:
    """``bridged`` for several token sets, each with its own prompt ids (L_i,), in one pass of the bridge (one read
    of the LLM's embedding table instead of one per set); each result equals its own ``bridged`` (a test checks
    it). A bridge in training mode, whose batch norms would mix the sets, reads them one by one."""
    bridge = getattr(model, "bridge", None)
    if bridge is None or not parts:
        return list(parts)
    if bridge.training:
        return [bridged(model, part, ids) for part, ids in zip(parts, prompts)]
    ids, mask = left_pad(prompts, 0)  # (B, L); the padding is masked out of the prompts' queries
    queries = model.bridge_queries(ids.to(model.device), mask.to(model.device))  # (B, E) or None
    sets = [(p.tokens, p.positions[:, 0], p.positions[:, 1] * p.grid[1] + p.positions[:, 2]) for p in parts]
    read = bridge.read_many(sets, model.get_input_embeddings(), queries)
    return [replace(part, tokens=out) for part, out in zip(parts, read)]


def splice(model: Any, input_ids: torch.Tensor, visual: torch.Tensor, video_token_id: int) -> torch.Tensor:
    """(B, L) ids -> (B, L, E) embeddings with ``visual`` (V, E) written at the video placeholders, in order.
    The LLM's own embedding module embeds the text (Gemma3 scales inside it); visual tokens are not scaled."""
    mask = input_ids == video_token_id  # (B, L)
    if int(mask.sum()) != visual.shape[0]:
        raise PlaceholderMismatchError(
            f"the prompt has {int(mask.sum())} video placeholder tokens but {visual.shape[0]} visual tokens were kept"
        )
    embeds = model.get_input_embeddings()(input_ids)  # (B, L, E)
    return embeds.masked_scatter(mask.unsqueeze(-1), visual.to(embeds.device, embeds.dtype))


def left_pad(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids padded on the left and their (B, L) attention mask."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, length - len(seq) :] = seq
        mask[i, length - len(seq) :] = 1
    return ids, mask
