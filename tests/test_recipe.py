"""Recipes: the shipped stage files carry the paper's settings exactly; bad recipes fail with the key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tempflex.train.recipe import RecipeError, apply_overrides, load_recipe

ROOT = Path(__file__).resolve().parents[1]
STAGES = {  # paper section 4.1: lr per module, frozen modules, global batch, epochs
    "stage1_align.yaml": ({"vision_tower": 5e-5, "merger": 1e-3}, {"temporal", "language_model"}, 512, 1),
    "stage2_image_sft.yaml": ({"vision_tower": 2e-6, "merger": 1e-5, "language_model": 1e-5}, {"temporal"}, 512, 1),
    "stage3_tff_align.yaml": ({"temporal": 5e-4, "merger": 1e-5}, {"vision_tower", "language_model"}, 512, 1),
    "stage4_video_sft.yaml": (
        {"vision_tower": 2e-6, "temporal": 1e-5, "merger": 1e-5, "language_model": 1e-5}, set(), 256, 2),
}


@pytest.fixture
def paths(tmp_path: Path) -> list[str]:
    """Overrides that point a shipped recipe at files that exist (its data and previous stage are not here)."""
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text("datasets: []\n")
    (tmp_path / "prev").mkdir()
    return [f"data.mixture={mixture}", f"output_dir={tmp_path / 'run'}"], str(tmp_path / "prev")


def _load(path: Path, paths, extra: list[str] = ()) -> object:
    overrides, prev = paths
    text = path.read_text()
    if "from_pretrained" in text:
        overrides = [*overrides, f"model.from_pretrained={prev}"]
    return load_recipe(path, [*overrides, *extra])


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_recipes_carry_the_paper_settings(name: str, paths) -> None:
    lr, frozen, global_batch, epochs = STAGES[name]
    recipe = _load(ROOT / "recipes" / name, paths)
    assert recipe.optim.lr == lr and set(recipe.optim.freeze) == frozen
    assert (recipe.batch.global_batch, recipe.schedule.epochs) == (global_batch, epochs)
    assert (recipe.schedule.kind, recipe.schedule.warmup_ratio) == ("cosine", 0.03)
    assert recipe.gradient_checkpointing and recipe.deepspeed == Path("configs/deepspeed/zero2.json")
    assert recipe.data.num_frames == 64 and recipe.precision == "auto"
    assert recipe.batch.accumulation(8) == global_batch // (recipe.batch.micro_batch * 8)
    first = (ROOT / "recipes" / name).read_text().splitlines()[:8]
    assert any("torchrun" in line for line in first) and any("one CPU" in line for line in first)


@pytest.mark.parametrize("name", list(STAGES))
def test_tiny_recipes_train_the_same_modules(name: str, paths) -> None:
    lr, frozen, _, _ = STAGES[name]
    recipe = _load(ROOT / "recipes" / "tiny" / name, paths)
    assert recipe.optim.lr == lr and set(recipe.optim.freeze) == frozen
    assert recipe.deepspeed is None and recipe.gradient_checkpointing
    chained = name != "stage1_align.yaml"
    assert (recipe.model.from_pretrained is not None) == chained and (recipe.model.tiny is None) == chained


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["optim.bogus=1"], "optim.bogus: Extra inputs are not permitted"),
        (["batch.global_batch=many"], "batch.global_batch:"),
        (["data.mixture=/nonexistent/mixture.yaml"], "data.mixture:"),
        (["optim.freeze=[temporal, merger]"], "optim.lr.merger: the module is also listed in optim.freeze"),
        (["optim.lr.decoder=1e-5"], "optim.lr.decoder: unknown module"),
        (["optim.freeze=[]"], "optim.lr.temporal: give the module a learning rate"),
        (["optim.lr.merger=-1"], "optim.lr.merger: must be > 0"),
        (["cotrain.budgets=[16, 64]"], "cotrain.budgets:"),
        (["precision=fp8"], "precision:"),
        (["model.tiny.text=llama"], "model.tiny.text:"),
        (["model.tiny.bogus=1"], "model.tiny.bogus:"),
        (["seed"], "seed: an override must look like key.sub=value"),
    ],
)
def test_bad_recipes_name_the_key(overrides: list[str], key: str, paths) -> None:
    with pytest.raises(RecipeError) as err:
        _load(ROOT / "recipes" / "tiny" / "stage1_align.yaml", paths, overrides)
    assert str(err.value).startswith(key), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_previous_stage_names_the_key(paths) -> None:
    overrides, _ = paths
    with pytest.raises(RecipeError, match=r"^model.from_pretrained: .* is not a directory"):
        load_recipe(ROOT / "recipes" / "tiny" / "stage2_image_sft.yaml", [*overrides, "model.from_pretrained=/nope"])


def test_accumulation_must_divide(paths) -> None:
    recipe = _load(ROOT / "recipes" / "stage4_video_sft.yaml", paths)
    assert recipe.batch.accumulation(1) == 64 and recipe.batch.accumulation(64) == 1
    with pytest.raises(RecipeError, match=r"^batch.global_batch: 256 is not divisible by micro_batch \* world_size"):
        recipe.batch.accumulation(3)


def test_overrides_parse_yaml_values() -> None:
    tree = apply_overrides({"optim": {"lr": {}}}, ["optim.lr.merger=1e-4", "cotrain.budgets=[64, 16]",
                                                   "deepspeed=null", "log.every=5"])
    assert tree == {"optim": {"lr": {"merger": "1e-4"}}, "cotrain": {"budgets": [64, 16]}, "deepspeed": None,
                    "log": {"every": 5}}


def test_cli_reports_a_bad_recipe_in_one_line(paths, tmp_path: Path) -> None:
    overrides, _ = paths
    cmd = [sys.executable, "-m", "tempflex", "train", str(ROOT / "recipes" / "tiny" / "stage1_align.yaml"),
           *overrides, "optim.lr.decoder=1e-5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: optim.lr.decoder: unknown module 'decoder'; modules are vision_tower, " \
        "temporal, merger, language_model, bridge (or a dotted part of one)"
