"""The tokens a chat model starts each of a few candidate answers with, for scoring them in one forward pass.

Used by multiple-choice scoring (``tempflex.probes.evaluate``, ``tempflex ask --option``) and by the yes/no
relevance router of the token budgets (``tempflex.budget.relevance``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AnswerTokens:
    """How the options start an answer: ``lead`` tokens every answer shares (e.g. "it" in "it grows", "it
    shrinks"), appended to the prompt, then one distinct token per option (``ids``)."""

    lead: list[int]
    ids: list[int]


def answer_tokens(processor, options: Sequence[str]) -> AnswerTokens:
    """The answer tokens of each option under the processor's chat template (``user, assistant=option``)."""
    tok = processor.tokenizer
    prompt = processor.apply_chat_template([{"role": "user", "content": "Q"}], add_generation_prompt=True)
    prefix = tok(prompt, add_special_tokens=False).input_ids
    answers = []
    for option in options:
        full = processor.apply_chat_template(
            [{"role": "user", "content": "Q"}, {"role": "assistant", "content": option}], add_generation_prompt=False
        )
        tokens = tok(full, add_special_tokens=False).input_ids
        if tokens[: len(prefix)] != prefix or len(tokens) == len(prefix):
            raise ValueError("the chat template does not render an answer after its generation prompt")
        answers.append(tokens[len(prefix) :])
    lead = 0
    while all(len(a) > lead + 1 for a in answers) and len({a[lead] for a in answers}) == 1:
        lead += 1
    ids = [a[lead] for a in answers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the options {list(options)} cannot be told apart by one token (make their first words "
                         "differ)")
    return AnswerTokens(answers[0][:lead], ids)


def with_lead(inputs: dict, lead: list[int], model=None) -> dict:
    """Append the shared answer tokens to left-padded prompts (ids, mask, and embeddings when given: then
    ``model`` embeds them)."""
    if not lead:
        return inputs
    ids = inputs["input_ids"]
    extra = torch.tensor(lead, dtype=ids.dtype, device=ids.device).expand(ids.shape[0], -1)
    inputs["input_ids"] = torch.cat([ids, extra], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(extra)], dim=1)
    if "inputs_embeds" in inputs:
        embeds = model.get_input_embeddings()(extra).to(inputs["inputs_embeds"].dtype)
        inputs["inputs_embeds"] = torch.cat([inputs["inputs_embeds"], embeds], dim=1)
    return inputs
