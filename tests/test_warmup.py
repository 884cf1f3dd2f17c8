"""Stage 0 (``objective: options``): the visual path trained alone against multiple-choice options, on the one
training engine.

A tiny model on 24 real probe videos (mp4 through the real decoder): the run writes a loadable final model, the LLM
is untouched, a run killed mid-checkpoint resumes to the same weights and head, records without options are a one-line
error, and the losses of every step equal the golden values of ``tests/golden/train_options*_log.jsonl``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tempflex.cli import app
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.probes import ProbeSettings, generate_probes
from tempflex.train.build import build_model
from tempflex.train.checkpoint import OBJECTIVE_FILE, Checkpoints
from tempflex.train.engine import Trainer
from tempflex.train.objectives.option_head import OptionHead
from tempflex.train.objectives.option_terms import said_distance, variance_hinge
from tempflex.train.recipe import load_recipe

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import assert_matches_golden, kill_mid_checkpoint, launch, one_thread

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _one_thread():
    """Every run here on one thread: the golden values were recorded so, and the tiny runs are no slower."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def probes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probes")
    generate_probes(out, 5, 24, ProbeSettings(frames=8, size=32), workers=1, progress=None)
    return out


def _recipe(tmp: Path, probes: Path, mixture: str = "mixture_train.yaml", **extra) -> Path:
    """The recipe of the golden runs (``extra`` replaces whole sections)."""
    recipe = {
        "seed": 0, "output_dir": str(tmp / "run"), "resume": "auto", "objective": "options",
        "model": {"tiny": {"text": "qwen3"}},
        "data": {"mixture": str(probes / mixture), "max_length": 256, "num_frames": 8},
        "optim": {"lr": {"vision_tower": 1e-3, "temporal": 1e-3, "merger": 1e-3}, "freeze": ["language_model"]},
        "schedule": {"max_steps": 6, "warmup_ratio": 0.2},
        "batch": {"global_batch": 4, "micro_batch": 4},
        "checkpoint": {"every": 3},
        "log": {"every": 1, "progress": False},
        **extra,
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return TempFlexForConditionalGeneration.from_pretrained(directory).state_dict()


def test_run_trains_the_visual_path_only(tmp_path, probes):
    recipe = load_recipe(_recipe(tmp_path, probes))
    final = Trainer(recipe).run()
    start, _ = build_model(recipe.model, recipe.seed)
    trained = _weights(final)
    for name, value in start.named_parameters():
        same = torch.equal(value, trained[name])
        assert same == name.startswith("language_model."), name  # LLM untouched, every visual tensor moved
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] > 0 and 0 <= r["batch_accuracy"] <= 1 and r["lr"]["head"] >= 0 for r in log)
    checkpoint = tmp_path / "run" / "checkpoint-6"  # one checkpoint layout: the model, and the head beside it
    state = Checkpoints.load_objective(checkpoint)
    assert (checkpoint / "model" / "model.safetensors").is_file() and "generator" in state
    assert set(state["head"]) >= {"project.weight", "standardise.running_mean", "classify.2.weight"}


def test_resume_after_sigkill_mid_checkpoint_matches_uninterrupted(tmp_path, probes):
    """A process killed while checkpoint 3 is half written resumes from checkpoint 2 (model, optimizer, scheduler,
    head and the sampler's generator) to the weights and head of a run that was never interrupted."""
    runs = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs[name] = _recipe(tmp_path / name, probes, checkpoint={"every": 1, "keep": 2},
                             schedule={"max_steps": 4, "warmup_ratio": 0.2})
    uninterrupted = launch(runs["a"])
    kill_mid_checkpoint(runs["b"], 3)
    run_b = tmp_path / "b" / "run"
    assert (run_b / ".tmp-checkpoint-3").is_dir() and not (run_b / "checkpoint-3").exists()
    assert (run_b / "checkpoint-2" / OBJECTIVE_FILE).is_file() and not (run_b / "final").exists()
    resumed = launch(runs["b"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0 and "resumed from" in out and "checkpoint-2" in out, out
    assert uninterrupted.wait(timeout=300) == 0
    a, b = _weights(tmp_path / "a" / "run" / "final"), _weights(run_b / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    heads = [Checkpoints.load_objective(tmp_path / n / "run" / "checkpoint-4")["head"] for n in ("a", "b")]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    steps = [json.loads(line)["step"] for line in (run_b / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # step 3 ran twice, but the resume cut the log back to step 2


def test_records_without_options_are_a_one_line_error(tmp_path, probes):
    result = CliRunner().invoke(app, ["train", str(_recipe(tmp_path, probes, "mixture_train_captions.yaml"))])
    assert result.exit_code == 2
    message = result.output.strip()
    assert "\n" not in message and "no 'question'" in message and "multiple-choice" in message


def test_options_objective_refuses_to_train_the_llm(tmp_path, probes):
    path = _recipe(tmp_path, probes)
    recipe = load_recipe(path, ["optim.lr.language_model=1e-4", "optim.freeze=[]"])
    with pytest.raises(ValueError, match="language_model"):
        Trainer(recipe)


def _two_datasets(tmp: Path, probes: Path) -> str:
    """A mixture of the probes' train split ("main") and its val split ("easy")."""
    path = tmp / "two.yaml"
    path.write_text(yaml.safe_dump({"datasets": [
        {"name": "main", "path": str(probes / "train.jsonl"), "media_root": str(probes)},
        {"name": "easy", "path": str(probes / "val.jsonl"), "media_root": str(probes)}]}))
    return str(path)


def test_curriculum_phases_draw_from_their_datasets_only(tmp_path, probes, monkeypatch):
    phases = [{"datasets": ["easy"], "steps": 2}, {"datasets": ["main"], "steps": 1}]
    recipe = load_recipe(_recipe(tmp_path, probes, _two_datasets(tmp_path, probes), warmup={"curriculum": phases}))
    trainer = Trainer(recipe)
    data = trainer.objective.data
    sources = data.sources
    assert sources.count("easy") == len((probes / "val.jsonl").read_text().splitlines()) and "main" in sources
    drawn, batch = [], data.batch

    def spy(index):
        drawn.append([sources[i] for i in index.tolist()])
        return batch(index)

    monkeypatch.setattr(data, "batch", spy)
    trainer.run()
    assert len(drawn) == 6 and [set(d) for d in drawn[:3]] == [{"easy"}, {"easy"}, {"main"}]
    assert {s for d in drawn[3:] for s in d} == {"easy", "main"}  # then the whole mixture


@pytest.mark.parametrize(("curriculum", "message"), [
    ([{"datasets": ["easy"], "steps": 1}, {"datasets": ["hard"], "steps": 1}],
     "warmup.curriculum[1].datasets: no dataset 'hard' in the mixture (it has: main, easy)"),
    ([{"datasets": ["easy"], "steps": 3}, {"datasets": ["main"], "steps": 3}], "its 6 steps leave none of the 6"),
])
def test_bad_curriculum_is_a_one_line_error_before_decoding(tmp_path, probes, curriculum, message):
    path = _recipe(tmp_path, probes, _two_datasets(tmp_path, probes), warmup={"curriculum": curriculum})
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and message in result.output and "\n" not in result.output.strip()


def test_head_scores_only_each_records_options():
    torch.manual_seed(0)
    head = OptionHead(width=16, tokens=3, vocab=7)
    tokens, question = torch.randn(2, 3, 16), torch.randn(2, 16)
    options = torch.tensor([[4, 1, 6], [2, 5, 0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logits = head(tokens, question, options, mask)  # (B, K)
    assert logits.shape == (2, 3) and torch.isinf(logits[1, 2]) and torch.isfinite(logits[mask]).all()
    head.eval()  # batch statistics frozen: one video scores the same alone or in a batch
    alone = head(tokens[:1], question[:1], options[:1], mask[:1])
    assert torch.allclose(alone, head(tokens, question, options, mask)[:1], atol=1e-6)


def test_variance_hinge_golden_values():
    torch.manual_seed(0)
    spread = torch.randn(64, 8, 5) * 3  # std ~3 in every dimension: above the target, no penalty
    assert variance_hinge(spread, 1.0) == 0
    constant = torch.ones(4, 8, 5)  # no spread at all: the whole target (minus the 1e-4 variance floor)
    assert abs(float(variance_hinge(constant, 1.0)) - (1.0 - 0.01)) < 1e-6


def test_said_distance_golden_values():
    words = torch.randn(2, 16)
    tokens = torch.stack([words[0].expand(5, 16), words[1].expand(5, 16)])  # (B, V, E): every token is the word
    assert said_distance(tokens, words, 0.9) == 0
    shifted = tokens + 0.5  # every dimension off by 0.5: 0.25 per dimension, in units of the spread squared
    assert abs(float(said_distance(shifted, words, 0.5)) - 1.0) < 1e-6
    assert abs(float(said_distance(shifted, words, 1.0)) - 0.25) < 1e-6


def test_head_learns_at_the_largest_module_rate_not_a_parts(tmp_path, probes):
    """A dotted entry's own rate (here the merger's norm at 0.5) is not the head's; the largest module rate is."""
    optim = {"lr": {"vision_tower": 1e-3, "temporal": 2e-3, "merger": 1e-3, "merger.norm": 0.5},
             "freeze": ["language_model"]}
    trainer = Trainer(load_recipe(_recipe(tmp_path, probes, optim=optim)))
    rates = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert rates["head"] == 2e-3 and rates["merger.norm"] == 0.5 and rates["merger"] == 1e-3


@pytest.mark.parametrize("variant", ["options", "options_bridge"])
def test_losses_match_the_golden_run_step_by_step(tmp_path, probes, variant):
    """The golden logs were written by the options trainer before it became an objective of the one engine: the
    same seed must give the same losses. ``options_bridge`` adds a word bridge that reads the prompt (the bridge
    term and its own learning rate) and a two-phase curriculum over two datasets."""
    extra = {}
    if variant == "options_bridge":
        bridge = {"hidden": 16, "top": 8, "query": True}
        extra = {"model": {"tiny": {"text": "qwen3", "config": {"bridge": bridge}}},
                 "optim": {"lr": {"vision_tower": 1e-3, "temporal": 1e-3, "merger": 1e-3, "bridge": 2e-3},
                           "freeze": ["language_model"]},
                 "warmup": {"said": 0.5, "bridge": 0.7, "curriculum": [{"datasets": ["easy"], "steps": 2},
                                                                       {"datasets": ["main"], "steps": 1}]}}
        mixture = _two_datasets(tmp_path, probes)
    else:
        mixture = "mixture_train.yaml"
    Trainer(load_recipe(_recipe(tmp_path, probes, mixture, **extra))).run()
    assert_matches_golden(tmp_path / "run" / "log.jsonl", GOLDEN / f"train_{variant}_log.jsonl")


def test_options_objective_refuses_many_processes(tmp_path, probes, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="one process"):
        Trainer(load_recipe(_recipe(tmp_path, probes)))
