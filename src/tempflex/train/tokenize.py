"""A conversation with media -> input ids and labels on the assistant turns only.

The chat is rendered turn by turn through the processor's template (the tokenizer's own, or the plain fallback),
which splits it into segments: everything up to and including each assistant header is prompt, each answer with
its end-of-turn text is target. Segments are expanded (visual placeholder tokens) and tokenized one by one, so the
label mask falls exactly on token boundaries. Templates must be prefix-stable (rendering the first k turns is a
prefix of rendering all of them), which every common chat template is; otherwise the encoder says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tempflex.modeling import IGNORE_INDEX
from tempflex.processing import EncodedMedia, TempFlexProcessor


@dataclass
class EncodedConversation:
    input_ids: torch.Tensor  # (L,)
    labels: torch.Tensor  # (L,), IGNORE_INDEX off the assistant answers
    media: EncodedMedia


def chat_segments(processor: TempFlexProcessor, messages: list[dict]) -> list[tuple[str, bool]]:
    """(text, is_target) segments whose concatenation is the whole rendered chat."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = processor.apply_chat_template(messages[:i], add_generation_prompt=True)
        full = processor.apply_chat_template(messages[: i + 1], add_generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ValueError("the chat template is not prefix-stable: cannot mask labels turn by turn")
        answer = full[len(prompt) :]  # with its end-of-turn text (the plain template's is EOS)
        segments += [(prompt[len(done) :], False), (answer, True)]
        done = full
    return [(text, target) for text, target in segments if text]


def encode_conversation(
    processor: TempFlexProcessor, messages: list[dict], media: EncodedMedia, answer_tokens: int | None = None
) -> EncodedConversation:
    """Token ids and labels of a whole conversation whose placeholders are filled from ``media`` in order.
    ``answer_tokens``: label only the first k tokens of each answer (the word a multiple-choice answer is scored
    on, without the end-of-turn a frozen LLM was never taught to put there; with a tokenizer that keeps the space
    before an answer as a token of its own, that space is the first token); None labels the whole answer."""
    segments = chat_segments(processor, messages)
    expanded = processor.expand_text([text for text, _ in segments], media)
    ids, labels = [], []
    for text, (_, target) in zip(expanded, segments):
        piece = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labelled = len(piece) if answer_tokens is None else min(answer_tokens, len(piece))
        labels += piece[:labelled] + [IGNORE_INDEX] * (len(piece) - labelled) if target else [IGNORE_INDEX] * len(piece)
    return EncodedConversation(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long), media)
