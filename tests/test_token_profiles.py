"""Named token profiles ("2048 merged tokens" vs the authors' "2048 patches per image, 256 per frame"): the counts,
the config field, ``assemble(profile=...)`` and ``tempflex tokens --profile``."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TEXT_CONFIGS, VISION_CONFIG, make_tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, Siglip2VisionConfig, Siglip2VisionModel
from typer.testing import CliRunner

from tempflex import TempFlexForConditionalGeneration, TempFlexProcessor
from tempflex.cli import app
from tempflex.configuration import TempFlexConfig
from tempflex.hub.assemble import assemble
from tempflex.tokens import DEFAULT_PROFILE, PROFILES, count_tokens, get_profile


def test_profiles_count_what_their_names_say():
    assert DEFAULT_PROFILE == "merged2048" and set(PROFILES) == {"merged2048", "patches2048"}
    merged = count_tokens(1448, 1448, profile="merged2048")
    patches = count_tokens(1448, 1448, profile="patches2048")
    assert merged.tokens == 2025 and merged.tokens * 4 <= 8192  # 45 x 45 merged tokens, 8100 patches
    assert patches.tokens == 506 and patches.tokens * 4 <= 2048  # 22 x 23 merged tokens, 2024 patches
    assert count_tokens(1448, 1448).tokens == merged.tokens  # the library's default limits are the default profile
    for name in PROFILES:  # video frames: 256 patches (64 merged tokens) a frame in both
        assert count_tokens(1280, 720, frames=8, profile=name).per_frame == 60
    assert count_tokens(1448, 1448, profile="patches2048", max_tokens=100).tokens <= 100  # explicit max wins
    with pytest.raises(ValueError, match="unknown token profile 'huge'; choose one of merged2048, patches2048"):
        get_profile("huge")
    with pytest.raises(ValueError, match="native strategy only"):
        count_tokens(100, 100, strategy="tiled", profile="merged2048")


def test_config_records_a_profile_and_checks_it():
    config = TempFlexConfig(token_profile="patches2048", image_max_tokens=512)
    assert config.token_profile == "patches2048"
    with pytest.raises(ValueError, match="token_profile 'patches2048' means image_max_tokens 512"):
        TempFlexConfig(token_profile="patches2048")  # the limits left at merged2048's
    with pytest.raises(ValueError, match="unknown token profile"):
        TempFlexConfig(token_profile="nope")
    assert TempFlexConfig().token_profile is None


@pytest.fixture
def parts(tmp_path):
    torch.manual_seed(0)
    vision = Siglip2VisionModel(Siglip2VisionConfig(**VISION_CONFIG, vision_use_head=False))
    tokenizer = make_tokenizer()
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TEXT_CONFIGS["qwen3"], vocab_size=len(tokenizer)))
    return vision, llm, tokenizer


def test_assemble_with_a_profile_sets_the_limits_and_saves_them(parts, tmp_path):
    vision, llm, tokenizer = parts
    model, proc = assemble(vision, llm, tokenizer, profile="patches2048", tff_num_layers=1)
    assert model.config.image_max_tokens == 512 and model.config.token_profile == "patches2048"
    assert proc.settings.image_max_tokens == 512
    model.save_pretrained(tmp_path / "m")
    proc.save_pretrained(tmp_path / "m")
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert again.config.token_profile == "patches2048" and again.config.image_max_tokens == 512
    assert TempFlexProcessor.from_pretrained(tmp_path / "m").settings.image_max_tokens == 512
    with pytest.raises(ValueError, match="profile 'patches2048' sets image_max_tokens"):
        assemble(vision, llm, tokenizer, profile="patches2048", image_max_tokens=1024)
    with pytest.raises(ValueError, match="unknown token profile"):
        assemble(vision, llm, tokenizer, profile="x")


def test_cli_tokens_profile():
    runner = CliRunner()
    result = runner.invoke(app, ["tokens", "--size", "1448x1448", "--profile", "patches2048", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens"] == 506
    result = runner.invoke(app, ["tokens", "--size", "1448x1448", "--profile", "big"])
    assert result.exit_code == 2 and "unknown token profile 'big'" in result.output
    result = runner.invoke(app, ["tokens", "--table", "--profile", "patches2048"])
    assert result.exit_code == 2
