"""The wheel-LLM conversion cache (tempflex.hub.weights): a second load reads the cache instead of converting, a
killed or partial entry is rebuilt, an entry of the first format is rewritten from its own files, the tokenizer comes
back identical through the tokenizers library's loader; and `tempflex ask` shows its loading bar on stderr.

The cache tests run the real cache code on a tiny real Gemma3 (width 32) and the library's real BPE tokenizer, with a
counting converter in place of the one-minute GGUF conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig

from tempflex.hub import weights
from tempflex.hub.weights import CACHE_FORMAT, cached_model, is_cached
from tempflex.train.build import builtin_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXT = ["A red circle moves left.", "  two  spaces\tand a tab", "<video>\nWhich way?"]


class Converter:
    """A tiny real Gemma3 and tokenizer in place of the GGUF conversion, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, progress=None):
        self.calls += 1
        torch.manual_seed(0)
        config = Gemma3TextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=8, vocab_size=600, sliding_window=16,
                                  layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True)
        tokenizer = builtin_tokenizer()
        tokenizer.padding_side = "left"
        return AutoModelForCausalLM.from_config(config), tokenizer


@pytest.fixture
def entry(tmp_path: Path) -> Path:
    return tmp_path / "llm" / "tiny"


def _same_weights(a, b) -> None:
    other = b.state_dict()
    for name, value in a.state_dict().items():
        assert torch.equal(value, other[name]), name


def test_the_second_load_reads_the_cache_and_converts_nothing(entry: Path) -> None:
    convert = Converter()
    first = cached_model(entry, convert)
    assert convert.calls == 1 and is_cached(entry)
    again = cached_model(entry, convert)
    assert convert.calls == 1  # from the cache
    _same_weights(first, again)
    # the tied table is saved once under the input embedding's name, so loading initialises nothing
    with safe_open(entry / "model" / "model.safetensors", "pt") as f:
        keys = set(f.keys())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" not in keys
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()


def test_the_cached_tokenizer_loads_with_the_tokenizers_loader_and_encodes_the_same(entry: Path) -> None:
    convert = Converter()
    cached_model(entry, convert)
    original = convert()[1]
    tokenizer = AutoTokenizer.from_pretrained(entry / "tokenizer")
    assert type(tokenizer).__name__ == "TokenizersBackend" and tokenizer.padding_side == "left"
    assert tokenizer.backend_tokenizer.to_str() == original.backend_tokenizer.to_str()
    assert tokenizer.added_tokens_decoder == original.added_tokens_decoder
    for text in TEXT:
        assert tokenizer(text)["input_ids"] == original(text)["input_ids"]


@pytest.mark.parametrize("damage", ["no marker", "half weights", "other format"])
def test_a_killed_or_partial_entry_is_rebuilt(entry: Path, damage: str) -> None:
    convert = Converter()
    cached_model(entry, convert)
    if damage == "no marker":  # killed before the marker was written
        (entry / "complete").unlink()
    elif damage == "half weights":
        (entry / "complete").unlink()
        path = entry / "model" / "model.safetensors"
        path.write_bytes(path.read_bytes()[:1000])
    else:
        (entry / "complete").write_text("tempflex-llm-cache 999\n")
    again = cached_model(entry, convert)
    assert convert.calls == 2 and is_cached(entry)
    assert (entry / "complete").read_text().strip() == CACHE_FORMAT
    _same_weights(convert()[0], again)


def test_an_entry_of_the_first_format_is_rewritten_without_converting(entry: Path) -> None:
    convert = Converter()
    model, tokenizer = convert()
    # the first format: tied weights under the output name, tokenizer under its own class, marker "ok"
    from safetensors.torch import save_model

    (entry / "model").mkdir(parents=True)
    save_model(model, str(entry / "model" / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(entry / "model")
    tokenizer.save_pretrained(entry / "tokenizer")
    (entry / "complete").write_text("ok\n")
    steps = []
    again = cached_model(entry, convert, progress=lambda done, total, status: steps.append(status))
    assert convert.calls == 1 and is_cached(entry) and steps == ["updating the converted LLM's cache"]
    _same_weights(model, again)


def test_the_folders_of_killed_conversions_are_removed(entry: Path) -> None:
    dead = entry.with_name(f".tmp-{entry.name}-{2**22 + 12345}")  # above pid_max's default: no such process
    alive = entry.with_name(f".tmp-{entry.name}-{os.getppid()}")
    for folder in (dead, alive):
        (folder / "model").mkdir(parents=True)
    cached_model(entry, Converter())
    assert not dead.exists() and alive.exists()
    assert not list(entry.parent.glob(f".tmp-{entry.name}-{os.getpid()}"))  # ours was renamed into place


def test_the_gguf_conversion_loop_reports_each_tensor() -> None:
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    seen = []
    original = gguf_utils.tqdm
    with weights._tensor_progress(lambda done, total, status: seen.append((done, total))):
        # the loop transformers runs over a GGUF file's tensors
        assert list(gguf_utils.tqdm(["a", "b", "c"], desc="Converting and de-quantizing GGUF tensors...")) == [
            "a", "b", "c"]
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert gguf_utils.tqdm is original


@pytest.mark.slow
def test_ask_shows_its_loading_steps_on_stderr() -> None:
    """The real default model through the real command: the bar goes to stderr, the answer alone to stdout."""
    import json

    from typer.testing import CliRunner

    from tempflex.cli.app import app

    question = json.loads((ROOT / "examples" / "questions.jsonl").read_text().splitlines()[0])
    args = ["ask", question["question"], "--video", str(ROOT / "examples" / question["video"]), "--json"]
    for option in question["options"]:
        args += ["-o", option]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "loading the model" in result.stderr and "3/3" in result.stderr
    assert json.loads(result.stdout)["choice"] in question["options"]


def test_a_conversion_parses_each_gguf_file_once(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    original = gguf.GGUFReader
    with weights._one_gguf_parse():
        first = gguf.GGUFReader(str(path))  # as transformers calls it, for the tokenizer, config and weights
        assert gguf.GGUFReader(path) is first and [t.name for t in first.tensors] == ["token_embd.weight"]
    assert gguf.GGUFReader is original and gguf.GGUFReader(path) is not first
