"""The ``lm`` objective: next-token loss on the answers through the LLM (the paper's four stages), or FluxViT
multi-token-count co-training when the recipe has a ``cotrain`` section (``tempflex.train.cotrain``).

Batches: the mixture's conversations (``tempflex.train.data``) in length-grouped micro-batches
(``tempflex.train.collate.LengthGroupedSampler``); rank r of N takes micro-batches r, r+N, ..., so one optimizer
step of N processes sees exactly the samples one process sees. The loss is normalised by the answer tokens of the
whole global batch, so the updates agree up to float summation order on any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tempflex.train import cotrain as ct
from tempflex.train.objectives import MicroLoss, StepSize
from tempflex.train.recipe import CotrainSpec, OptimSpec, Recipe


@dataclass
class TrainParts:
    """An LM run's model and data; ``build_parts`` makes them from the recipe, tests may inject their own."""

    model: torch.nn.Module  # TempFlexForConditionalGeneration, fp32
    processor: object  # TempFlexProcessor, saved next to the weights
    dataset: Dataset  # map-style; item = example dict, or a list of them (one per co-training budget)
    collate: Callable[[list], dict]  # example dicts -> one batch dict
    lengths: list[int]  # estimated sequence length per item, for length grouping


def build_dataset(recipe: Recipe, processor) -> tuple[Dataset, Callable[[list], dict], list[int]]:
    """The mixture dataset of a recipe (``tempflex.train.data``), its collate function and item lengths."""
    from functools import partial

    from tempflex.train.collate import collate
    from tempflex.train.data import ConversationDataset
    from tempflex.video.flexible import FlexibleSampling

    flex = recipe.data.flexible
    dataset = ConversationDataset(
        recipe.data.mixture, processor, max_length=recipe.data.max_length, num_frames=recipe.data.num_frames,
        seed=recipe.seed, flexible=FlexibleSampling(**flex.model_dump()) if flex else None,
        cotrain_budgets=recipe.cotrain.budgets if recipe.cotrain else None, answer_tokens=recipe.data.answer_tokens,
        cotrain_select=recipe.cotrain.select if recipe.cotrain else "resize",
    )
    return dataset, partial(collate, pad_token_id=processor.tokenizer.pad_token_id), list(dataset.lengths)


def build_parts(recipe: Recipe) -> TrainParts:
    """The model (tempflex.train.build) and the mixture dataset of a recipe."""
    from tempflex.train.build import build_model

    model, processor = build_model(recipe.model, recipe.seed, trains_llm=recipe.optim.trains("language_model"))
    return TrainParts(model, processor, *build_dataset(recipe, processor))


def token_select(spec: CotrainSpec) -> ct.TokenSelect | None:
    """The in-forward token selection of a co-training recipe; None for the dataset's resized views."""
    return None if spec.select == "resize" else ct.TokenSelect(spec.select, spec.groups, spec.p)


def epoch_batches(sampler, epoch: int, accum: int, skip_steps: int) -> list[list[int]]:
    """This rank's micro-batches of ``epoch`` in whole accumulation groups, minus the steps already done."""
    sampler.set_epoch(epoch)
    batches = list(sampler)
    batches = batches[: len(batches) // accum * accum]
    return batches[skip_steps * accum :]


class LMObjective:
    """Next-token loss on the answer tokens (``cotrain``: summed over budgets plus self-distillation)."""

    name = "lm"

    def __init__(self, recipe: Recipe, parts: TrainParts | None = None) -> None:
        self.recipe = recipe
        self.data = None if parts is None else (parts.dataset, parts.collate, parts.lengths)
        self.steps_per_epoch = 0

    # -- set-up ---------------------------------------------------------------------------------------------------
    def setup(self, model: nn.Module, processor, accelerator) -> None:
        from tempflex.train.collate import LengthGroupedSampler

        recipe, acc = self.recipe, accelerator
        self.acc = acc
        if self.data is None:
            self.data = build_dataset(recipe, processor)
        self.dataset, self.collate, lengths = self.data
        self.accum = recipe.batch.accumulation(acc.num_processes)
        self.sampler = LengthGroupedSampler(
            lengths, recipe.batch.micro_batch, seed=recipe.seed, num_replicas=acc.num_processes,
            rank=acc.process_index, group_by_length=recipe.data.group_by_length,
            per_step=self.accum * acc.num_processes,
        )
        self.steps_per_epoch = len(self.sampler) // self.accum
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch.global_batch: {recipe.batch.global_batch} is more than the "
                             f"{len(lengths)} samples of the dataset")

    def modules(self) -> dict[str, nn.Module]:
        return {}

    def param_groups(self, optim: OptimSpec) -> list[dict]:
        return []

    # -- batches --------------------------------------------------------------------------------------------------
    def epoch(self, epoch: int, skip: int) -> Iterator[list]:
        batches = epoch_batches(self.sampler, epoch, self.accum, skip)
        if hasattr(self.dataset, "set_epoch"):  # per-epoch draws (flexible sampling)
            self.dataset.set_epoch(epoch)
        loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=self._collate,
                            num_workers=self.recipe.data.num_workers)
        groups = iter(loader)
        while True:
            micro = [next(groups, None) for _ in range(self.accum)]
            if micro[-1] is None:
                return
            yield micro

    def _collate(self, examples: list) -> dict | list[dict]:
        if examples and isinstance(examples[0], list):  # co-training: one batch per budget
            return [self.collate([e[b] for e in examples]) for b in range(len(examples[0]))]
        return self.collate(examples)

    # -- loss -----------------------------------------------------------------------------------------------------
    def measure(self, micro: list, accelerator) -> StepSize:
        views = [m[0] if isinstance(m, list) else m for m in micro]  # the largest budget's view
        local = torch.tensor([sum(ct.count_answer_tokens(v) for v in views), sum(len(v["input_ids"]) for v in views),
                              sum(int(v.get("num_visual_tokens", 0)) for v in views)], dtype=torch.float64,
                             device=accelerator.device)
        tokens, samples, visual = accelerator.reduce(local, "sum").tolist()
        return StepSize(samples, visual, max(tokens, 1.0) / (self.accum * accelerator.num_processes))

    def loss(self, model: nn.Module, batch: dict | list[dict], size: StepSize) -> MicroLoss:
        spec, device = self.recipe.cotrain, self.acc.device
        if spec is None:
            out = ct.lm_loss(model, batch, size.num_items, device)
        else:
            out = ct.cotrain_loss(model, batch, size.num_items, device, weight=spec.distill_weight,
                                  temperature=spec.temperature, budgets=spec.budgets, select=token_select(spec))
        first = batch[0] if isinstance(batch, list) else batch
        out.loss = out.loss + ct.idle_term(self.acc.unwrap_model(model), first)
        return out

    def record(self, parts: dict[str, float]) -> dict:
        return {"parts": parts} if len(parts) > 1 else {}  # one part is the loss itself

    # -- resume ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {}  # the sampler is a function of (seed, epoch); the position is the engine's

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"the lm objective keeps no state, the checkpoint has {sorted(state)}")
