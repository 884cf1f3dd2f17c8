"""Shared tiny fixtures: a real byte-level BPE tokenizer trained here, tiny Qwen3/Gemma3 configs, real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from tempflex.hub.assemble import add_placeholder_tokens
from tempflex.configuration import TempFlexConfig
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.train.build import builtin_tokenizer

TEXT_CONFIGS = {
    "qwen3": dict(
        model_type="qwen3", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, tie_word_embeddings=True,
    ),
    "gemma3": dict(
        model_type="gemma3_text", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
    ),
}
VISION_CONFIG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_patches=16)


def make_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """The library's offline byte-level BPE (a real tokenizer trained here), with or without a chat template."""
    tokenizer = builtin_tokenizer()
    if not chat_template:
        tokenizer.chat_template = None
    return tokenizer


def tiny_config(text: str = "qwen3", **overrides) -> tuple[TempFlexConfig, PreTrainedTokenizerFast]:
    """A tiny TempFlexConfig (width 32, 2 layers) and a tokenizer with its placeholder tokens."""
    tokenizer = make_tokenizer(chat_template=overrides.pop("chat_template", True))
    cfg = dict(tff_num_layers=2, **overrides)
    config = TempFlexConfig(vision_config=dict(VISION_CONFIG), text_config=dict(TEXT_CONFIGS[text]), **cfg)
    add_placeholder_tokens(tokenizer, config)
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    config.text_config.bos_token_id = None
    return config, tokenizer


def tiny_model(text: str = "qwen3", seed: int = 0, **overrides):
    """(model, processor) with random weights from a fixed seed; TFF is the identity (see ``perturb_tff``)."""
    config, tokenizer = tiny_config(text, **overrides)
    torch.manual_seed(seed)
    model = TempFlexForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))


def perturb_tff(model: TempFlexForConditionalGeneration, seed: int = 1) -> None:
    """Give the zero-initialised TFF gains random values so that TFF is not the identity in a test."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.temporal.layers:
            layer.norm.weight.copy_(torch.randn(layer.norm.weight.shape, generator=g))
            layer.context_scale.copy_(torch.randn(layer.context_scale.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. On a loaded 2-core machine each op of a second thread waits a scheduler
    slice (~8 ms), which made the budget modules 20x slower. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def skimage_photo(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        pytest.skip(f"{path} not shipped by this scikit-image")
    return path


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> Path:
    """20 probe videos, all in the test split (seed 3)."""
    from tempflex.probes import ProbeSettings, generate_probes

    out = tmp_path_factory.mktemp("probes")
    generate_probes(out, seed=3, n=20, settings=ProbeSettings(split={"test": 1.0}))
    return out


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory) -> Path:
    """A tiny random TempFlex model saved with its processor (8 frames at test time)."""
    model, processor = tiny_model(video_frames_eval=8)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
