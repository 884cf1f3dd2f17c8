"""Training objectives: what a run optimises, behind one Protocol, chosen by the recipe's ``objective`` key.

The engine (``tempflex.train.engine``) owns the loop, the optimizer and schedule (``tempflex.train.params``),
gradient clipping, the progress bar, ``log.jsonl``, checkpoints and resume (``tempflex.train.checkpoint``) and the
final model. An objective owns the rest:

- its batch source: ``epoch(epoch, skip)`` yields, for each optimizer step, the step's micro-batches (one per
  gradient-accumulation step);
- its extra trainable modules (``modules()``; the options head) and their optimizer groups (``param_groups``);
- its loss terms (``loss``) and the metrics it logs (``record``);
- whatever resume needs beyond the model, optimizer, scheduler and RNG (``state_dict``: the head, a sampler's
  generator), which the engine saves inside each checkpoint.

Registered objectives: ``lm`` (next-token loss on the answers through the LLM, optionally FluxViT co-training;
``tempflex.train.objectives.lm``) and ``options`` (stage 0: the visual path alone against multiple-choice options;
``tempflex.train.objectives.options``). Modules are imported when an objective is built, not before.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from tempflex.train.cotrain import MicroLoss
from tempflex.train.recipe import OptimSpec, Recipe

__all__ = ["REGISTRY", "MicroLoss", "Objective", "StepSize", "build_objective", "objective_class"]


@dataclass
class StepSize:
    """What one optimizer step holds, over all processes; the engine logs throughput from it."""

    samples: float  # samples (sequences or videos) of the global batch
    visual: float  # visual tokens of those samples
    num_items: float = 1.0  # the objective's loss normaliser per micro-batch (lm: answer tokens / micro-batches)


@runtime_checkable
class Objective(Protocol):
    """One training objective; ``setup`` is called once, after the model is built and frozen as the recipe says."""

    name: str
    steps_per_epoch: int  # optimizer steps in one epoch (known after setup)

    def setup(self, model: nn.Module, processor: Any, accelerator: Any) -> None:
        """Build the batch source and the extra modules (on ``accelerator.device``)."""

    def modules(self) -> dict[str, nn.Module]:
        """Trainable modules besides the model (saved through ``state_dict``, never in the final model)."""

    def param_groups(self, optim: OptimSpec) -> list[dict]:
        """AdamW groups of ``modules()`` (``{"params", "lr", "weight_decay", "name"}``), after the model's."""

    def epoch(self, epoch: int, skip: int) -> Iterator[list]:
        """This process's micro-batches, one list per optimizer step, of ``epoch`` minus its first ``skip`` steps."""

    def measure(self, micro: list, accelerator: Any) -> StepSize:
        """Sizes of one step (reduced over processes) before its forward passes."""

    def loss(self, model: nn.Module, batch: Any, size: StepSize) -> MicroLoss:
        """Forward one micro-batch; the engine backpropagates ``loss`` (accelerate divides by the accumulation)."""

    def record(self, parts: dict[str, float]) -> dict:
        """Log fields from the step's parts (summed over micro-batches and processes, divided by their count)."""

    def state_dict(self) -> dict:
        """What resume needs beyond model, optimizer, scheduler and RNG; {} when nothing."""

    def load_state_dict(self, state: dict) -> None: ...


# name -> "module:class"; imported when built
REGISTRY: dict[str, str] = {
    "lm": "tempflex.train.objectives.lm:LMObjective",
    "options": "tempflex.train.objectives.options:OptionsObjective",
}


def objective_class(name: str) -> type:
    """The class registered as ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"objective: unknown objective {name!r}; known: {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_objective(recipe: Recipe) -> Objective:
    """The recipe's objective, checked against the recipe (a one-line ``ValueError`` when it cannot run it)."""
    return objective_class(recipe.objective)(recipe)
