"""The ``options`` objective (stage 0 of tempflex-tiny): a from-scratch visual path (encoder, TFF, merger; and the
word bridge, when the model has one) trained on multiple-choice records without the LLM's layers.

Why: a from-scratch encoder trained through a frozen LLM collapses to a constant soft prompt (docs/tempflex_tiny.md).
SigLIP2 itself is pretrained before any LLM reads it; tempflex-tiny's encoder gets the same kind of start, supervised
by the probes' questions: a small head (``OptionHead``) reads all merged tokens of a video in order, adds the
question (the mean of its tokens' frozen LLM input embeddings), and scores the record's options, each a row of a
classifier over every option text of the data. The head is thrown away afterwards (it is kept in each checkpoint's
objective state); the encoder, TFF and merger keep what they learned. The LLM's layers never run, so a step of 32
videos takes 0.6 s here against 3 s for 8 through Gemma3-270M.

The loss has up to four terms (weights in the recipe's ``warmup`` block), each added after a measured failure of
the ones before (docs/tempflex_tiny.md):

- ``choice``: the head's cross-entropy over the record's options.
- ``variance``: VICReg's variance hinge on the merged tokens at the LLM's embedding spread. The head alone let the
  tokens stay nearly constant (it standardises its input): after 600 steps they differed between videos by 0.07 per
  dimension around a common token of norm 9, while the LLM's own word embeddings differ by 0.92.
- ``said``: every merged token drawn to the frozen LLM's input embedding of the first token of the right option
  under the chat template (the token multiple-choice scoring reads). With those embeddings in place of the visual
  tokens, the frozen Gemma3-270M picks the right option for 88 % of 150 validation questions.
- ``bridge``: for a model with a word bridge, the bridge's cross-entropy over the LLM's vocabulary on that same
  token (``tempflex.bridge``); the said term alone moved the tokens too slowly.

Batches: each step draws ``batch.global_batch`` records with replacement from a seeded generator, from the phases of
the recipe's curriculum in order (each from named datasets of the mixture), then from the whole mixture
(``CurriculumSampler``). Runs on one process: the head standardises over the whole batch.

Shapes: B videos, V merged tokens per video, E LLM width, K options, W the LLM's vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F_
from torch import nn

from tempflex.train.objectives import MicroLoss, StepSize
from tempflex.train.objectives.option_data import OptionBatchSource, check_curriculum, load_recipe_records
from tempflex.train.objectives.option_head import OptionHead, visual_tokens
from tempflex.train.objectives.option_terms import embedding_spread, said_distance, variance_hinge
from tempflex.train.recipe import OptimSpec, Recipe

METRICS = ("choice", "variance", "said", "bridge", "batch_accuracy")  # logged per step, in this order


class CurriculumSampler:
    """The records of each step: ``batch`` indices drawn with replacement by a seeded generator, from the pool of
    the curriculum phase the step falls in, or from all ``size`` records after the last phase."""

    def __init__(self, phases: list[tuple[int, torch.Tensor]], size: int, batch: int, seed: int) -> None:
        self.phases, self.size, self.batch = phases, size, batch  # phases: (last step, record indices)
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, step: int) -> torch.Tensor:
        """(batch,) record indices for optimizer step ``step`` (1-based); steps are drawn in order."""
        pool = next((p for end, p in self.phases if step <= end), None)  # None: the whole mixture
        if pool is None:
            return torch.randint(0, self.size, (self.batch,), generator=self.generator)
        return pool[torch.randint(0, len(pool), (self.batch,), generator=self.generator)]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def curriculum_phases(recipe: Recipe, sources: list[str]) -> list[tuple[int, torch.Tensor]]:
    """(last step, the records it draws from as indices into the data) for each phase of the recipe's curriculum,
    in order; ``sources`` names each record's dataset."""
    check_curriculum(recipe, sources)
    plan, end = [], 0
    for phase in recipe.warmup.curriculum:
        end += phase.steps
        plan.append((end, torch.tensor([i for i, n in enumerate(sources) if n in phase.datasets])))
    return plan


def head_lr(optim: OptimSpec) -> float:
    """The head learns at the largest module rate (a dotted part's own rate, e.g. a scalar's, is not a module's)."""
    modules = [lr for name, lr in optim.lr.items() if "." not in name] or list(optim.lr.values())
    return max(modules)


class OptionsObjective:
    """Stage 0 from a recipe (``objective: options``). ``data``: the mixture already decoded (e.g. a benchmark that
    trains several models on the same records); by default it is decoded in ``setup``."""

    name = "options"

    def __init__(self, recipe: Recipe, data: OptionBatchSource | None = None) -> None:
        if recipe.schedule.max_steps is None:
            raise ValueError("schedule.max_steps: the options objective needs a step count")
        if recipe.optim.trains("language_model"):
            raise ValueError("optim.lr.language_model: the options objective never runs the LLM's layers")
        if recipe.deepspeed is not None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("objective: options runs on one process without DeepSpeed (its head standardises over "
                             "the whole batch)")
        self.recipe, self.data = recipe, data
        self.steps_per_epoch = recipe.schedule.max_steps  # one pass of draws

    # -- set-up ---------------------------------------------------------------------------------------------------
    def setup(self, model: nn.Module, processor, accelerator) -> None:
        recipe = self.recipe
        self.acc, self.device = accelerator, accelerator.device
        if self.data is None:
            self.data = load_recipe_records(recipe, model, processor,
                                            progress=recipe.log.progress and accelerator.is_main_process)
        self.sampler = CurriculumSampler(curriculum_phases(recipe, self.data.sources or []), len(self.data),
                                         recipe.batch.global_batch, recipe.seed)
        self.tokens = self.data.patches.shape[1] // model.config.merge_size ** 2  # V per video
        self.head = OptionHead(model.config.text_config.hidden_size, self.tokens, len(self.data.vocab))
        self.head.to(self.device)
        self.target = embedding_spread(model)

    def modules(self) -> dict[str, nn.Module]:
        return {"head": self.head}

    def param_groups(self, optim: OptimSpec) -> list[dict]:
        params, lr = list(self.head.parameters()), head_lr(optim)
        return [{"params": [p for p in params if p.ndim >= 2], "lr": lr, "weight_decay": optim.weight_decay,
                 "name": "head"},
                {"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0, "name": "head"}]

    # -- batches --------------------------------------------------------------------------------------------------
    def epoch(self, epoch: int, skip: int) -> Iterator[list]:
        """Each step's records split into micro-batches of ``batch.micro_batch``; one epoch is the whole run."""
        for step in range(epoch * self.steps_per_epoch + skip + 1, (epoch + 1) * self.steps_per_epoch + 1):
            index = self.sampler.draw(step)
            yield [self._batch(part) for part in index.split(self.recipe.batch.micro_batch)]

    def _batch(self, index: torch.Tensor) -> tuple:
        return tuple(None if t is None else t.to(self.device) for t in self.data.batch(index))

    # -- loss -----------------------------------------------------------------------------------------------------
    def measure(self, micro: list, accelerator) -> StepSize:
        videos = sum(len(batch[5]) for batch in micro)  # answer (n,) of each micro-batch
        return StepSize(float(videos), float(videos * self.tokens))

    def loss(self, model: nn.Module, batch: tuple, size: StepSize) -> MicroLoss:
        """The weighted terms over one micro-batch of n videos (means over its videos)."""
        model = self.acc.unwrap_model(model)
        patches, grids, question, options, mask, answer, said, prompt = batch
        tokens, said_logits = visual_tokens(model, patches, grids, len(answer), prompt)  # (n, V, E), (n, W)
        logits = self.head(tokens, question, options, mask)  # (n, K)
        w = self.recipe.warmup
        terms = {"choice": F_.cross_entropy(logits, answer), "variance": variance_hinge(tokens, self.target)}
        with torch.no_grad():
            words = model.get_input_embeddings()(said)  # (n, E), scaled as the LLM reads them
        terms["said"] = said_distance(tokens, words, self.target)
        loss = w.choice * terms["choice"] + w.variance * terms["variance"] + w.said * terms["said"]
        if said_logits is not None:  # the word bridge says the answer's token
            terms["bridge"] = F_.cross_entropy(said_logits.float(), said)
            loss = loss + w.bridge * terms["bridge"]
        parts = {k: float(v.detach()) for k, v in terms.items()}
        parts["batch_accuracy"] = float((logits.argmax(-1) == answer).float().mean())
        return MicroLoss(loss, parts)

    def record(self, parts: dict[str, float]) -> dict:
        return {k: parts.get(k) for k in METRICS}  # bridge: None without a word bridge

    # -- resume ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The head (its BatchNorm statistics too) and the sampler's generator."""
        return {"head": self.head.state_dict(), **self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "head" not in state:
            raise ValueError("resume: the checkpoint holds no options head (was it written by another objective?)")
        self.head.load_state_dict(state["head"])
        self.sampler.load_state_dict(state)
