"""Assemble a new TempFlex-VL from an existing SigLIP2 encoder and an existing causal LLM (paper section 4.1).

The paper starts from siglip2-so400m-patch16-naflex and Gemma3-4B or Qwen3-4B; the same code takes any
``Siglip2VisionModel`` checkpoint and any ``AutoModelForCausalLM`` checkpoint (a directory, or a GGUF file through
transformers' ``gguf_file=``). The placeholder tokens are added to the tokenizer, the LLM's embedding matrix grows
to match (new rows start at the mean embedding), and the TFF and merger start fresh.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Siglip2VisionModel,
)

from tempflex.configuration import TempFlexConfig
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.vision.encoder import extend_position_table


def add_placeholder_tokens(tokenizer: PreTrainedTokenizerBase, config: TempFlexConfig) -> None:
    """Add the image/video/frame-separator tokens to ``tokenizer`` and record their ids in ``config``."""
    tokens = [config.image_token, config.video_token, config.frame_separator_token]
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    vocab = tokenizer.get_vocab()
    config.image_token_id = vocab[config.image_token]
    config.video_token_id = vocab[config.video_token]
    config.frame_separator_token_id = vocab[config.frame_separator_token]
    if tokenizer.pad_token is None:  # batched generation pads on the left
        tokenizer.pad_token = tokenizer.eos_token


def _load_vision(vision: Siglip2VisionModel | str | Path, dtype: torch.dtype) -> Siglip2VisionModel:
    if isinstance(vision, Siglip2VisionModel):
        return vision
    return Siglip2VisionModel.from_pretrained(vision, dtype=dtype)


def _load_llm(
    llm: PreTrainedModel | str | Path, gguf_file: str | None, dtype: torch.dtype
) -> PreTrainedModel:
    if isinstance(llm, PreTrainedModel):
        return llm
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoModelForCausalLM.from_pretrained(llm, dtype=dtype, **kwargs)


def assemble(
    vision: Siglip2VisionModel | str | Path,
    llm: PreTrainedModel | str | Path,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    *,
    gguf_file: str | None = None,
    max_positions: int | None = 2048,
    dtype: torch.dtype = torch.float32,
    **config_overrides,
) -> tuple[TempFlexForConditionalGeneration, TempFlexProcessor]:
    """Build a TempFlex-VL from an encoder and an LLM (models or checkpoint paths) and its processor.

    ``tokenizer`` defaults to the LLM's own (loaded from ``llm`` when it is a path). ``max_positions`` resamples the
    encoder's position table to at most that many entries (the paper's 256 -> 2048; None keeps it).
    ``config_overrides`` set TempFlexConfig fields (``tff_num_layers=2``, ``video_timestamps=True``, ...).
    """
    vision_model = _load_vision(vision, dtype)
    language_model = _load_llm(llm, gguf_file, dtype)
    if tokenizer is None:
        if isinstance(llm, PreTrainedModel):
            raise ValueError("pass a tokenizer when the LLM is given as a model object")
        tokenizer = llm
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **({"gguf_file": gguf_file} if gguf_file else {}))
    if max_positions is not None:
        extend_position_table(vision_model, max_positions)

    config = TempFlexConfig(
        vision_config=vision_model.config.to_dict(), text_config=language_model.config.to_dict(), **config_overrides
    )
    add_placeholder_tokens(tokenizer, config)
    if len(tokenizer) > language_model.get_input_embeddings().weight.shape[0]:
        language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    config.text_config = language_model.config

    config.vision_config = vision_model.config
    model = TempFlexForConditionalGeneration(config, vision_tower=vision_model, language_model=language_model)
    model.to(dtype)
    model.generation_config = language_model.generation_config
    processor = TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))
    return model.eval(), processor
