"""Run logs: a rich progress bar and log lines on the main process, ``output_dir/log.jsonl``, optional sinks.

Every ``log.every`` optimizer steps (and at the last step) one record goes out: step, epoch, loss (the token-mean
LM loss of the global batch; with co-training the sum over budgets plus the distillation terms, and each part),
learning rate per module, gradient norm before clipping, samples/s, visual tokens per sample. Tensorboard and wandb are used only when asked for
and installed; asked for but missing, they are skipped with one warning.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typing_extensions import Self

from tempflex.atomic import write_text_atomic
from tempflex.train.recipe import LogSpec


def _fmt(record: dict) -> str:
    lrs = " ".join(f"{k}={v:.2e}" for k, v in record["lr"].items())
    return (f"step {record['step']}/{record['total_steps']} epoch {record['epoch']} loss {record['loss']:.4f} "
            f"| {record['samples_per_s']:.2f} samples/s | {record['visual_tokens_per_sample']:.0f} vis tok/sample "
            f"| lr {lrs}")


def trim_log(path: Path, step: int) -> None:
    """Cut ``log.jsonl`` back to the records of steps <= ``step`` (a resumed run redoes the steps after its
    checkpoint, which a killed run had already logged), atomically; torn or foreign lines after them go too."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line torn by the kill: nothing after it was written whole
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step:
            break
        kept.append(line)
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


class RunLogger:
    """Context manager; ``log(record)`` after every optimizer step. Silent on non-main processes."""

    def __init__(self, spec: LogSpec, output_dir: Path, total_steps: int, start_step: int, main: bool,
                 config: dict | None = None) -> None:
        self.spec, self.output_dir, self.total, self.main = spec, Path(output_dir), total_steps, main
        self.start, self.config = start_step, config or {}
        self.console = Console(stderr=True)
        self.progress: Progress | None = None
        self._jsonl = self._tb = self._wandb = None

    def __enter__(self) -> Self:
        if not self.main:
            return self
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.spec.jsonl:
            trim_log(self.output_dir / "log.jsonl", self.start)
            self._jsonl = open(self.output_dir / "log.jsonl", "a", encoding="utf-8")
        self._open_sinks()
        if self.spec.progress:
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                TimeRemainingColumn(), console=self.console, transient=False,
            )
            self.progress.start()
            self._task = self.progress.add_task("", total=self.total, completed=self.start)
        return self

    def _open_sinks(self) -> None:
        if self.spec.tensorboard:
            if importlib.util.find_spec("tensorboard") is None:
                self.console.print("warning: log.tensorboard is on but tensorboard is not installed; skipped")
            else:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))
        if self.spec.wandb:
            if importlib.util.find_spec("wandb") is None:
                self.console.print("warning: log.wandb is on but wandb is not installed; skipped")
            else:
                import wandb

                self._wandb = wandb.init(project="tempflex", dir=str(self.output_dir), config=self.config)

    def log(self, record: dict) -> None:
        if not self.main:
            return
        step = record["step"]
        if self.progress is not None:
            self.progress.update(self._task, completed=step, description=f"loss {record['loss']:.4f}")
        if step % self.spec.every and step != self.total:
            return
        self.console.print(_fmt(record), highlight=False, soft_wrap=True)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        scalars.update({f"lr/{k}": v for k, v in record["lr"].items()})
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.progress is not None:
            self.progress.stop()
        for sink, close in ((self._jsonl, "close"), (self._tb, "close"), (self._wandb, "finish")):
            if sink is not None:
                getattr(sink, close)()
