"""The training engine: one recipe -> one run on accelerate, from one CPU process to many GPUs, for any objective.

The engine owns the loop, the optimizer and schedule (``tempflex.train.params``), gradient clipping, the progress
bar and ``log.jsonl`` (``tempflex.train.logs``), checkpoints and resume (``tempflex.train.checkpoint``) and the final
model; the recipe's ``objective`` (``tempflex.train.objectives``: ``lm`` or ``options``) owns its batches, its extra
trainable modules, its loss terms and the metrics it logs.

Launch the same command under ``torchrun --nproc_per_node N`` or ``accelerate launch``; the engine reads the world
size, derives gradient accumulation = global_batch / (micro_batch * world_size), and shards the length-grouped
micro-batches so that rank r takes micro-batches r, r+N, ...: one optimizer step of N processes sees exactly the
samples one process sees, and the loss is normalised by the answer tokens of the whole global batch
(``tempflex.train.objectives.lm``), so the updates agree up to float summation order.

Distributed set-up on CPU: accelerate picks no backend on a machine without accelerators unless told, so every
process thought it was alone. Plain data parallel uses ``Accelerator(cpu=True)`` (gloo); DeepSpeed gets
``InitProcessGroupKwargs(backend="gloo")``, which accelerate passes to ``deepspeed.init_distributed``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed
from transformers import get_cosine_schedule_with_warmup

from tempflex.train.build import build_model
from tempflex.train.checkpoint import Checkpoints, Position
from tempflex.train.logs import RunLogger
from tempflex.train.objectives import Objective, build_objective
from tempflex.train.objectives.lm import LMObjective, TrainParts, build_parts, epoch_batches
from tempflex.train.params import apply_freeze, group_lrs, param_groups, train_mode
from tempflex.train.recipe import Recipe

__all__ = ["TrainParts", "Trainer", "build_parts", "epoch_batches", "train"]


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


class Trainer:
    """One run of a recipe's objective; ``run()`` returns ``output_dir/final``.

    ``parts``: an lm run's model and data made by the caller (tests); ``objective``: an objective made by the caller
    (e.g. the options objective over records already decoded). By default both come from the recipe.
    """

    def __init__(self, recipe: Recipe, parts: TrainParts | None = None, objective: Objective | None = None) -> None:
        self.recipe = recipe
        self._position: Position | None = None  # where run() starts: set by resume()
        if parts is not None:
            objective = objective or LMObjective(recipe, parts)
        self.objective = objective or build_objective(recipe)
        self.accum = recipe.batch.accumulation(world_size())
        self.acc = make_accelerator(recipe, self.accum)
        set_seed(recipe.seed)
        if parts is not None:
            model, self.processor = parts.model, parts.processor
        else:
            model, self.processor = build_model(recipe.model, recipe.seed,
                                                trains_llm=recipe.optim.trains("language_model"))
        apply_freeze(model, recipe.optim)
        self.objective.setup(model, self.processor, self.acc)
        self.total_steps = recipe.schedule.max_steps or recipe.schedule.epochs * self.objective.steps_per_epoch
        self._prepare(model)

    def _prepare(self, model: torch.nn.Module) -> None:
        recipe = self.recipe
        if recipe.gradient_checkpointing:
            model.activation_checkpointing_enable()
        model.config.use_cache = False
        train_mode(model)  # frozen BatchNorms keep their statistics
        for module in self.objective.modules().values():
            train_mode(module)
        groups = param_groups(model, recipe.optim) + self.objective.param_groups(recipe.optim)
        optimizer = torch.optim.AdamW(groups, betas=recipe.optim.betas, eps=recipe.optim.eps)
        self.params = [p for g in groups for p in g["params"]]  # what the clip measures, in group order
        warmup = math.ceil(recipe.schedule.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, self.total_steps)
        # the scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step it N times)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.acc.register_for_checkpointing(self.scheduler)
        self.ckpt = Checkpoints(self.acc, recipe.output_dir, recipe.checkpoint.keep)

    @property
    def base_model(self) -> torch.nn.Module:
        """The model without accelerate's wrappers."""
        return self.acc.unwrap_model(self.model)

    def resume(self) -> Position:
        """Find and load the checkpoint to go on from (``recipe.resume``), or a fresh position; ``run`` calls it
        when it was not called before. Bad resume settings and damaged checkpoints raise ``ValueError``."""
        if self._position is None:
            self._position = self._resume()
        return self._position

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
        self.objective.load_state_dict(self.ckpt.load_objective(path))
        if self.acc.is_main_process:
            self.acc.print(f"resumed from {path} at step {position.step}")
        position.world_size = self.acc.num_processes
        return position

    def run(self) -> Path:
        position = self.resume()
        if self.acc.is_main_process:
            self.recipe.output_dir.mkdir(parents=True, exist_ok=True)
            dump = self.recipe.model_dump(mode="json")
            (self.recipe.output_dir / "recipe.yaml").write_text(yaml.safe_dump(dump, sort_keys=False))
        config = self.recipe.model_dump(mode="json")
        with RunLogger(self.recipe.log, self.recipe.output_dir, self.total_steps, position.step,
                       self.acc.is_main_process, config) as logger:
            while position.step < self.total_steps:
                for micro in self.objective.epoch(position.epoch, position.step_in_epoch):
                    record = self._step(micro)
                    position.step += 1
                    position.step_in_epoch += 1
                    logger.log({"step": position.step, "epoch": position.epoch, "total_steps": self.total_steps,
                                **record})
                    every = self.recipe.checkpoint.every
                    if every and position.step % every == 0:
                        self.ckpt.save(self.model, self.processor, position, self.objective.state_dict())
                    if position.step >= self.total_steps:
                        break
                position.epoch, position.step_in_epoch = position.epoch + 1, 0
        return self.ckpt.save_final(self.model, self.processor)

    def _step(self, micro: list) -> dict:
        """One optimizer step over ``accum`` micro-batches; returns the log record's measurements."""
        start = time.perf_counter()
        size = self.objective.measure(micro, self.acc)
        loss_sum, parts, grad_norm = 0.0, {}, None
        for batch in micro:
            with self.acc.accumulate(self.model):
                out = self.objective.loss(self.model, batch, size)
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
        return {"loss": sums[0], **self.objective.record(dict(zip(names, sums[1:]))),
                **({"grad_norm": grad_norm} if grad_norm is not None else {}), "lr": lrs,
                "samples_per_s": size.samples / seconds,
                "visual_tokens_per_sample": size.visual / max(size.samples, 1.0), "seconds": seconds}

    def _clip(self) -> float | None:
        """Clip the step's gradients to ``optim.grad_clip``; returns their global norm before clipping.

        Under DeepSpeed the clip (and the step) already happened inside ``backward`` and accelerate only reports
        DeepSpeed's norm. The norm is logged because it is the one figure that exposes a wrong loss scale (e.g.
        dividing by the accumulation steps twice): AdamW's update is invariant to a constant gradient factor.
        """
        clip = self.recipe.optim.grad_clip or math.inf  # inf: measure only (the factor is clamped to 1)
        norm = self.acc.clip_grad_norm_(self.params, clip)
        return None if norm is None else float(norm)


def train(recipe: Recipe, parts: TrainParts | None = None) -> Path:
    """Run a recipe to the end (resuming as ``recipe.resume`` says); returns ``output_dir/final``."""
    return Trainer(recipe, parts).run()
