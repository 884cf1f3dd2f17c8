"""Freezing and parameter groups below the top-level modules: dotted entries, the most specific one decides, and a
frozen BatchNorm keeps its running statistics in training."""

from __future__ import annotations

import pytest
import torch

from tempflex.train.params import apply_freeze, build_optimizer, param_groups, train_mode
from tempflex.train.recipe import OptimSpec, RecipeError, check_modules
from tests.conftest import tiny_model

FROZEN = ["vision_tower", "temporal", "language_model"]


@pytest.fixture
def model():
    model, _ = tiny_model("gemma3", bridge={"slots": 2, "span": 4})
    return model


def _trained(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_a_dotted_entry_trains_that_part_alone(model) -> None:
    optim = OptimSpec(lr={"bridge.say": 1e-3, "bridge.sharpness": 1e-2}, freeze=[*FROZEN, "merger", "bridge"],
                      weight_decay=0.1)
    check_modules(optim)
    counts = apply_freeze(model, optim)
    say = {f"bridge.say.{n}" for n, _ in model.bridge.say.named_parameters()}
    assert _trained(model) == say | {"bridge.sharpness"}
    assert counts == {"bridge.say": sum(p.numel() for p in model.bridge.say.parameters()),
                      "bridge.sharpness": 1}
    groups = param_groups(model, optim)
    assert [(g["name"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups] == [
        ("bridge.sharpness", 1e-2, 0.0, 1),
        ("bridge.say", 1e-3, 0.1, 2), ("bridge.say", 1e-3, 0.0, 2)]


def test_the_most_specific_entry_wins(model) -> None:
    optim = OptimSpec(lr={"merger": 1e-3, "bridge": 1e-3}, freeze=[*FROZEN, "bridge.standardise", "merger.mlp"])
    apply_freeze(model, optim)
    trained = _trained(model)
    assert "bridge.down.weight" in trained and "merger.norm.weight" in trained
    assert not any(n.startswith(("bridge.standardise.", "merger.mlp.", "language_model.")) for n in trained)


@pytest.mark.parametrize(
    ("lr", "freeze", "message"),
    [
        ({"bridge.sayy": 1e-3}, [*FROZEN, "merger", "bridge"],
         "optim.lr.bridge.sayy: the model has no parameters under 'bridge.sayy'"),
        ({"merger": 1e-3}, [*FROZEN, "bridge", "merger.nothing"], "optim.freeze: the model has no parameters under"),
        ({"merger": 1e-3}, FROZEN, "optim.lr.bridge: the model has a bridge: give it a learning rate or list it"),
    ],
)
def test_a_path_the_model_lacks_is_named(model, lr, freeze, message) -> None:
    optim = OptimSpec(lr=lr, freeze=freeze)
    check_modules(optim)
    with pytest.raises(RecipeError, match=message):
        apply_freeze(model, optim)


@pytest.mark.parametrize(
    ("lr", "freeze", "message"),
    [
        ({"decoder.say": 1e-3}, [*FROZEN, "merger"], "optim.lr.decoder.say: unknown module"),
        ({"merger..say": 1e-3}, [*FROZEN, "merger"], "optim.lr.merger..say: unknown module"),
        ({"bridge": 1e-3}, FROZEN, "optim.lr.merger: give the module a learning rate"),
        ({"bridge": 1e-3}, [*FROZEN, "merger", "bridge"], "optim.lr.bridge: the module is also listed"),
    ],
)
def test_recipe_checks_dotted_entries(lr, freeze, message) -> None:
    with pytest.raises(RecipeError, match=message.replace(".", r"\.")):
        check_modules(OptimSpec(lr=lr, freeze=freeze))


def test_a_frozen_batchnorm_keeps_its_statistics_in_training(model) -> None:
    """Training the readout's output through a batch of a few videos must not renormalise its input with them."""
    readout = model.bridge
    with torch.no_grad():
        readout.standardise.running_mean.normal_()
        readout.standardise.running_var.uniform_(0.5, 2)
    optim = OptimSpec(lr={"bridge.say": 1e-2}, freeze=[*FROZEN, "merger", "bridge"])
    apply_freeze(model, optim)
    train_mode(model)
    assert model.training and readout.training and readout.say.training
    assert not readout.standardise.training
    before = {k: v.clone() for k, v in readout.state_dict().items()}
    optimizer = build_optimizer(model, optim)
    width = model.config.text_config.hidden_size
    items = [torch.randn(3, 4, width) for _ in range(2)]  # two videos of 3 frames, 4 merged tokens each
    _, logits = readout(items, model.get_input_embeddings())
    torch.nn.functional.cross_entropy(logits, torch.tensor([3, 7])).backward()
    optimizer.step()
    after = readout.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.startswith("say.")}
    # and the eval-mode output equals what the step used: the running statistics, not the batch's
    model.eval()
    _, again = readout(items, model.get_input_embeddings())
    train_mode(model)
    _, trained = readout(items, model.get_input_embeddings())
    torch.testing.assert_close(again, trained)


def test_train_mode_trains_a_trained_batchnorm(model) -> None:
    apply_freeze(model, OptimSpec(lr={"merger": 1e-3, "bridge": 1e-3}, freeze=FROZEN))
    train_mode(model)
    assert model.bridge.standardise.training


def test_tempflex_tiny_stage2_trains_only_the_readouts_output(tmp_path) -> None:
    """The shipped stage-2 recipe names parts that the stage-1 recipe's readout has, and freezes the rest."""
    from pathlib import Path

    from tempflex.train.recipe import load_recipe

    recipes = Path(__file__).resolve().parents[1] / "recipes" / "tempflex-tiny"
    stage1 = load_recipe(recipes / "stage1_align.yaml", [f"model.from_pretrained={tmp_path}"])
    stage2 = load_recipe(recipes / "stage2_temporal.yaml", [f"model.from_pretrained={tmp_path}"])
    model, _ = tiny_model("gemma3", **stage1.model.config)
    apply_freeze(model, stage2.optim)
    train_mode(model)
    parts = ("bridge.say.", "bridge.ask.", "bridge.sharpness")
    assert _trained(model) == {n for n, _ in model.named_parameters() if n.startswith(parts)}
    assert not model.bridge.standardise.training and model.bridge.say.training
