"""The training engine: one recipe -> one run on accelerate, from one CPU process to many GPUs.

Launch the same command under ``torchrun --nproc_per_node N`` or ``accelerate launch``; the engine reads the world
size, derives gradient accumulation = global_batch / (micro_batch * world_size), and shards the length-grouped
micro-batches so that rank r takes micro-batches r, r+N, ...: one optimizer step of N processes sees exactly the
samples one process sees, and the loss is normalised by the answer tokens of the whole global batch
(``tempflex.train.cotrain``), so the updates agree up to float summation order.

Distributed set-up on CPU: accelerate picks no backend on a machine without accelerators unless told, so every
process thought it was alone. Plain data parallel uses ``Accelerator(cpu=True)`` (gloo); DeepSpeed gets
``InitProcessGroupKwargs(backend="gloo")``, which accelerate passes to ``deepspeed.init_distributed``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed
from torch.utils.data import DataLoader, Dataset
from transformers import get_cosine_schedule_with_warmup

from tempflex.train import cotrain as ct
from tempflex.train.checkpoint import Checkpoints, Position
from tempflex.train.logs import RunLogger
from tempflex.train.params import apply_freeze, build_optimizer, group_lrs, train_mode
from tempflex.train.recipe import Recipe


@dataclass
class TrainParts:
    """What a run trains and on what; ``build_parts`` makes them from the recipe, tests may inject their own."""

    model: torch.nn.Module  # TempFlexForConditionalGeneration, fp32
    processor: object  # TempFlexProcessor, saved next to the weights
    dataset: Dataset  # map-style; item = example dict, or a list of them (one per co-training budget)
    collate: Callable[[list], dict]  # example dicts -> one batch dict
    lengths: list[int]  # estimated sequence length per item, for length grouping


def build_parts(recipe: Recipe) -> TrainParts:
    """The model (tempflex.train.build) and the mixture dataset (tempflex.train.data) of a recipe."""
    from functools import partial

    from tempflex.train.build import build_model
    from tempflex.train.collate import collate
    from tempflex.train.data import ConversationDataset
    from tempflex.video.flexible import FlexibleSampling

    model, processor = build_model(recipe.model, recipe.seed, trains_llm=recipe.optim.trains("language_model"))
    flex = recipe.data.flexible
    dataset = ConversationDataset(
        recipe.data.mixture, processor, max_length=recipe.data.max_length, num_frames=recipe.data.num_frames,
        seed=recipe.seed, flexible=FlexibleSampling(**flex.model_dump()) if flex else None,
        cotrain_budgets=recipe.cotrain.budgets if recipe.cotrain else None, answer_tokens=recipe.data.answer_tokens,
    )
    return TrainParts(model, processor, dataset, partial(collate, pad_token_id=processor.tokenizer.pad_token_id),
                      list(dataset.lengths))


def world_size() -> int:
    """Processes of the run, as torchrun / accelerate launch export it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision: auto = bf16 on a GPU that supports it, else fp32 ("no")."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def deepspeed_plugin(recipe: Recipe, accum: int, mixed: str):
    """A DeepSpeedPlugin from the recipe's JSON config, its "auto" values filled from the recipe."""
    from accelerate.utils import DeepSpeedPlugin

    config = json.loads(Path(recipe.deepspeed).read_text())
    fill = {
        "train_micro_batch_size_per_gpu": recipe.batch.micro_batch,
        "train_batch_size": recipe.batch.global_batch,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": recipe.optim.grad_clip or 0.0,
    }
    for key, value in fill.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    for key in ("bf16", "fp16"):
        if config.get(key, {}).get("enabled") == "auto":
            config[key]["enabled"] = mixed == key
    return DeepSpeedPlugin(hf_ds_config=config, gradient_accumulation_steps=accum,
                           gradient_clipping=recipe.optim.grad_clip)


def make_accelerator(recipe: Recipe, accum: int) -> Accelerator:
    mixed = mixed_precision(recipe.precision)
    cpu = not torch.cuda.is_available()
    # every trainable parameter gets a gradient in every step (cotrain.idle_term), so no unused-parameter search
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    if recipe.deepspeed is None:
        return Accelerator(cpu=cpu, mixed_precision=mixed, gradient_accumulation_steps=accum,
                           kwargs_handlers=handlers)
    if cpu:
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    plugin = deepspeed_plugin(recipe, accum, mixed)
    return Accelerator(mixed_precision=mixed, deepspeed_plugin=plugin, gradient_accumulation_steps=accum,
                       kwargs_handlers=handlers)


def epoch_batches(sampler, epoch: int, accum: int, skip_steps: int) -> list[list[int]]:
    """This rank's micro-batches of ``epoch`` in whole accumulation groups, minus the steps already done."""
    sampler.set_epoch(epoch)
    batches = list(sampler)
    batches = batches[: len(batches) // accum * accum]
    return batches[skip_steps * accum :]


def _sampler(parts: TrainParts, recipe: Recipe, acc: Accelerator):
    from tempflex.train.collate import LengthGroupedSampler

    return LengthGroupedSampler(
        parts.lengths, recipe.batch.micro_batch, seed=recipe.seed, num_replicas=acc.num_processes,
        rank=acc.process_index, group_by_length=recipe.data.group_by_length,
        per_step=recipe.batch.accumulation(acc.num_processes) * acc.num_processes,
    )


class Trainer:
    """One run; ``run()`` returns ``output_dir/final``."""

    def __init__(self, recipe: Recipe, parts: TrainParts | None = None) -> None:
        self.recipe = recipe
        self.accum = recipe.batch.accumulation(world_size())
        self.acc = make_accelerator(recipe, self.accum)
        set_seed(recipe.seed)
        self.parts = parts or build_parts(recipe)
        self.sampler = _sampler(self.parts, recipe, self.acc)
        self.steps_per_epoch = len(self.sampler) // self.accum
        if self.steps_per_epoch == 0:
            raise ValueError(f"batch.global_batch: {recipe.batch.global_batch} is more than the "
                             f"{len(self.parts.lengths)} samples of the dataset")
        self.total_steps = recipe.schedule.max_steps or recipe.schedule.epochs * self.steps_per_epoch
        self._prepare()

    def _prepare(self) -> None:
        recipe, model = self.recipe, self.parts.model
        apply_freeze(model, recipe.optim)
        if recipe.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.config.use_cache = False
        train_mode(model)  # frozen BatchNorms keep their statistics
        optimizer = build_optimizer(model, recipe.optim)
        warmup = math.ceil(recipe.schedule.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, self.total_steps)
        # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it N times)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.acc.register_for_checkpointing(self.scheduler)
        self.ckpt = Checkpoints(self.acc, recipe.output_dir, recipe.checkpoint.keep)

    def _resume(self) -> Position:
        self.ckpt.clean_stale()
        fresh = Position(sampler_seed=self.recipe.seed, world_size=self.acc.num_processes,
                         global_batch=self.recipe.batch.global_batch)
        path = self.ckpt.resolve(self.recipe.resume)
        if path is None:
            return fresh
        position = self.ckpt.load(path, self.model, self.recipe.batch.global_batch)
        if position.sampler_seed != self.recipe.seed:
            raise ValueError(f"resume: {path} was written with seed {position.sampler_seed}, the recipe says "
                             f"{self.recipe.seed}")
        if self.acc.is_main_process:
            self.acc.print(f"resumed from {path} at step {position.step}")
        position.world_size = self.acc.num_processes
        return position

    def _loader(self, batches: list[list[int]]) -> DataLoader:
        return DataLoader(self.parts.dataset, batch_sampler=batches, collate_fn=self._collate,
                          num_workers=self.recipe.data.num_workers)

    def _collate(self, examples: list) -> dict | list[dict]:
        if examples and isinstance(examples[0], list):  # co-training: one batch per budget
            return [self.parts.collate([e[b] for e in examples]) for b in range(len(examples[0]))]
        return self.parts.collate(examples)

    def run(self) -> Path:
        position = self._resume()
        if self.acc.is_main_process:
            self.recipe.output_dir.mkdir(parents=True, exist_ok=True)
            dump = self.recipe.model_dump(mode="json")
            (self.recipe.output_dir / "recipe.yaml").write_text(yaml.safe_dump(dump, sort_keys=False))
        config = self.recipe.model_dump(mode="json")
        with RunLogger(self.recipe.log, self.recipe.output_dir, self.total_steps, position.step,
                       self.acc.is_main_process, config) as logger:
            while position.step < self.total_steps:
                batches = epoch_batches(self.sampler, position.epoch, self.accum, position.step_in_epoch)
                if hasattr(self.parts.dataset, "set_epoch"):  # per-epoch draws (flexible sampling)
                    self.parts.dataset.set_epoch(position.epoch)
                groups = iter(self._loader(batches))
                while position.step < self.total_steps:
                    micro = [next(groups, None) for _ in range(self.accum)]
                    if micro[-1] is None:
                        break
                    record = self._step(micro)
                    position.step += 1
                    position.step_in_epoch += 1
                    logger.log({"step": position.step, "epoch": position.epoch, "total_steps": self.total_steps,
                                **record})
                    every = self.recipe.checkpoint.every
                    if every and position.step % every == 0:
                        self.ckpt.save(self.model, self.parts.processor, position)
                position.epoch, position.step_in_epoch = position.epoch + 1, 0
        return self.ckpt.save_final(self.model, self.parts.processor)

    def _step(self, micro: list) -> dict:
        """One optimizer step over ``accum`` micro-batches; returns the log record's measurements."""
        start = time.perf_counter()
        views = [m[0] if isinstance(m, list) else m for m in micro]  # the largest budget's view
        local = torch.tensor([sum(ct.count_answer_tokens(v) for v in views), sum(len(v["input_ids"]) for v in views),
                              sum(int(v.get("num_visual_tokens", 0)) for v in views)], dtype=torch.float64,
                             device=self.acc.device)
        tokens, samples, visual = self.acc.reduce(local, "sum").tolist()
        num_items = max(tokens, 1.0) / (self.accum * self.acc.num_processes)
        loss_sum, parts, grad_norm = 0.0, {}, None
        for batch in micro:
            with self.acc.accumulate(self.model):
                out = self._micro_loss(batch, num_items)
                self.acc.backward(out.loss)  # under DeepSpeed this also runs the optimizer step at the boundary
                if self.acc.sync_gradients:
                    grad_norm = self._clip()
                self.optimizer.step()
                self.optimizer.zero_grad()
            loss_sum += float(out.loss.detach())
            for key, value in out.parts.items():
                parts[key] = parts.get(key, 0.0) + value
        lrs = group_lrs(self.optimizer)  # the rates this step used
        self.scheduler.step()
        names = sorted(parts)
        sums = torch.tensor([loss_sum] + [parts[k] for k in names], dtype=torch.float64, device=self.acc.device)
        sums = (self.acc.reduce(sums, "sum") / (self.accum * self.acc.num_processes)).tolist()
        seconds = time.perf_counter() - start
        return {"loss": sums[0], **({"parts": dict(zip(names, sums[1:]))} if len(names) > 1 else {}),
                **({"grad_norm": grad_norm} if grad_norm is not None else {}), "lr": lrs,
                "samples_per_s": samples / seconds,
                "visual_tokens_per_sample": visual / max(samples, 1.0), "seconds": seconds}

    def _micro_loss(self, batch: dict | list[dict], num_items: float) -> ct.MicroLoss:
        spec = self.recipe.cotrain
        if spec is None:
            out = ct.lm_loss(self.model, batch, num_items, self.acc.device)
        else:
            out = ct.cotrain_loss(self.model, batch, num_items, self.acc.device, weight=spec.distill_weight,
                                  temperature=spec.temperature, budgets=spec.budgets)
        first = batch[0] if isinstance(batch, list) else batch
        out.loss = out.loss + ct.idle_term(self.acc.unwrap_model(self.model), first)
        return out

    def _clip(self) -> float | None:
        """Clip the step's gradients to ``optim.grad_clip``; returns their global norm before clipping.

        Under DeepSpeed the clip (and the step) already happened inside ``backward`` and accelerate only reports
        DeepSpeed's norm. The norm is logged because it is the one figure that exposes a wrong loss scale (e.g.
        dividing by the accumulation steps twice): AdamW's update is invariant to a constant gradient factor.
        """
        clip = self.recipe.optim.grad_clip or math.inf  # inf: measure only (the factor is clamped to 1)
        norm = self.acc.clip_grad_norm_(self.model.parameters(), clip)
        return None if norm is None else float(norm)


def train(recipe: Recipe, parts: TrainParts | None = None) -> Path:
    """Run a recipe to the end (resuming as ``recipe.resume`` says); returns ``output_dir/final``."""
    return Trainer(recipe, parts).run()
