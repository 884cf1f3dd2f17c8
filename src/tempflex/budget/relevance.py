"""Zero-shot segment relevance from the model itself (Tempo's ATA router, with our model as its own small VLM).

Shapes: S segments, B prompts in a batch, L text length, V vocabulary.

For each segment, the model reads that segment's visual tokens and "Is this part of the video relevant to the
question: {question}? Answer yes or no." through the processor's chat template; the score is
logit(Yes) - logit(No) at the first answer position, i.e. the log-odds of "Yes" between the two answers. The
answer ids are the first tokens after the generation prompt of the rendered answers (after any tokens both
answers share, which the prompt then ends with), so they are the tokens the template would really produce.
Segments are batched with left padding and explicit position ids, so a batch gives the scores one prompt at a time
would (a test checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tempflex.answers import answer_tokens
from tempflex.budget.base import BudgetError, TimestampEncoder, VisualTokens
from tempflex.budget.prompt import bridged_many, build_prompt, frame_tags, left_pad, splice, split_template
from tempflex.budget.timestamps import NoTags
from tempflex.progress import tracked

RELEVANCE_PROMPT = "Is this part of the video relevant to the question: {question}? Answer yes or no."
ANSWERS = ("Yes", "No")  # the rendered answers whose first tokens are compared
PROGRESS_FROM = 32  # batches; fewer score without a progress bar


def segment_tokens(tokens: VisualTokens, segment: range) -> VisualTokens:
    frame = tokens.positions[:, 0]
    return tokens.select((frame >= segment.start) & (frame < segment.stop))


@torch.no_grad()
def segment_relevance(
    model: Any,
    processor: Any,
    tokens: VisualTokens,
    segments: Sequence[range],
    question: str,
    *,
    timestamps: TimestampEncoder | None = None,
    answers: Sequence[str] = ANSWERS,
    batch_size: int = 8,
) -> torch.Tensor:
    """(S,) float32 logit(yes) - logit(no) per segment (a range of frames of ``tokens``, taken before a model's
    optional bridge, which reads each segment alone); ``timestamps`` writes the segment's time tags (none by
    default)."""
    if not question.strip():
        raise BudgetError("the question is empty")
    if not segments:
        raise BudgetError("no segments to score")
    if batch_size < 1:
        raise BudgetError(f"batch_size must be >= 1, got {batch_size}")
    encoder = timestamps or NoTags()
    prefix, suffix = split_template(processor, RELEVANCE_PROMPT.format(question=question.strip().rstrip("?")))
    answer = answer_tokens(processor, answers)
    lead, (yes, no) = answer.lead, answer.ids
    parts = [segment_tokens(tokens, seg) for seg in segments]
    empty = [i for i, part in enumerate(parts) if not len(part)]
    if empty:
        raise BudgetError(f"segments {empty} keep no visual tokens")
    prompts = [build_prompt(processor, prefix, suffix, p.tokens_per_frame().tolist(), frame_tags(encoder, p))
               for p in parts]
    parts = bridged_many(model, parts, [prompt.input_ids for prompt in prompts])  # each alone, in one pass
    pad_id = processor.tokenizer.pad_token_id
    pad_id = processor.tokenizer.eos_token_id if pad_id is None else pad_id
    scores = []
    starts = range(0, len(parts), batch_size)  # an hour at one pass a frame is hundreds of batches: a bar
    for start in tracked(starts, f"relevance of {len(parts)} segments", show=len(starts) >= PROGRESS_FROM):
        chunk = range(start, min(start + batch_size, len(parts)))
        tail = torch.tensor(lead, dtype=torch.long)  # the answers' shared lead, if any
        ids, mask = left_pad([torch.cat([prompts[i].input_ids, tail]) for i in chunk], pad_id)  # (B, L)
        ids, mask = ids.to(model.device), mask.to(model.device)
        visual = torch.cat([parts[i].tokens for i in chunk])  # (V, E)
        embeds = splice(model, ids, visual, processor.video_token_id)  # (B, L, E)
        position_ids = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, L): real tokens start at 0 after the padding
        out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False,
                    logits_to_keep=1)
        logits = out.logits[:, -1].float()  # (B, V)
        scores.append((logits[:, yes] - logits[:, no]).cpu())
    return torch.cat(scores)
