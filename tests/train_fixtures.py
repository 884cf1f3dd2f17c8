"""Training test helpers: a tiny in-memory dataset with the ConversationDataset contract, recipes, a runner and
the golden-log comparison.

``TinyConversations`` makes real processor outputs from small random images and 2-frame videos (no files), so the
engine is tested without the mixture reader. ``python tests/train_fixtures.py RECIPE.yaml [key=value ...]`` runs
a recipe on it (the entry point of the subprocess and torchrun tests); a recipe with ``objective: options`` runs on
its own mixture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset

from tempflex.media import VideoClip
from tempflex.processing import TempFlexProcessor
from tempflex.train.checkpoint import DELAY_ENV
from tempflex.train.collate import collate
from tempflex.train.engine import train
from tempflex.train.objectives.lm import TrainParts
from tempflex.train.recipe import load_recipe
from tempflex.train.tokenize import encode_conversation

ROOT = Path(__file__).resolve().parents[1]
ANSWERS = ["a red ball moves to the left.", "a cat sits on a rock.", "the camera pans right.", "a bird flies."]


class TinyConversations(Dataset):
    """n samples alternating image and video questions; item i is deterministic in (seed, i)."""

    def __init__(self, processor: TempFlexProcessor, n: int = 8, seed: int = 0, video_size: int = 128,
                 budgets: list[int] | None = None, videos_only: bool = False) -> None:
        self.processor, self.n, self.seed, self.video_size = processor, n, seed, video_size
        self.videos_only = videos_only
        self.budgets = sorted(budgets, reverse=True) if budgets else None
        self.lengths = [len(self._encode(i, processor)["input_ids"]) for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def _media(self, i: int) -> tuple[list, list]:
        rng = np.random.default_rng((self.seed, i))
        if self.videos_only or i % 2:
            s = self.video_size
            return [], [VideoClip.from_array(rng.integers(0, 256, (2, s, s, 3), dtype=np.uint8), fps=2.0)]
        h, w = (int(v) for v in rng.choice([32, 64, 96], size=2))
        return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)], []

    def _encode(self, i: int, processor: TempFlexProcessor) -> dict:
        images, videos = self._media(i)
        kind = "image" if images else "video"
        messages = [
            {"role": "user", "content": [{"type": kind}, {"type": "text", "text": "what happens?"}]},
            {"role": "assistant", "content": ANSWERS[i % len(ANSWERS)]},
        ]
        media = processor.encode_media(images, videos)
        enc = encode_conversation(processor, messages, media)
        example = {"input_ids": enc.input_ids, "labels": enc.labels, **media.tensors()}
        m = processor.settings.merge_size**2
        example["num_visual_tokens"] = sum(
            int(example[k].prod(-1).sum()) // m for k in ("image_grid_thw", "video_grid_thw") if k in example)
        return example

    def _with_budget(self, budget: int) -> TempFlexProcessor:
        s = self.processor.settings
        return TempFlexProcessor(self.processor.tokenizer, dataclasses.replace(
            s, video_max_tokens_per_frame=budget, video_min_tokens_per_frame=min(budget, s.video_min_tokens_per_frame)))

    def __getitem__(self, i: int) -> dict | list[dict]:
        if self.budgets is None:
            return self._encode(i, self.processor)
        return [self._encode(i, self._with_budget(b)) for b in self.budgets]


def tiny_recipe(tmp: Path, **sections) -> dict:
    """A recipe dict for a tiny CPU run on TinyConversations (the mixture file is a stub: parts are injected)."""
    mixture = tmp / "mixture.yaml"
    mixture.write_text("datasets: []\n")
    recipe = {
        "seed": 0, "output_dir": str(tmp / "run"), "resume": "auto",
        "model": {"tiny": {"text": "qwen3"}},
        "data": {"mixture": str(mixture), "max_length": 512, "group_by_length": True},
        "optim": {"lr": {"vision_tower": 1e-3, "temporal": 1e-3, "merger": 1e-3, "language_model": 1e-3}},
        "schedule": {"epochs": 1, "warmup_ratio": 0.1},
        "batch": {"global_batch": 4, "micro_batch": 1},
        "precision": "fp32",
        "log": {"every": 1, "progress": False},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and key in recipe else value
    return recipe


def write_recipe(tmp: Path, **sections) -> Path:
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp, **sections)))
    return path


def parts_for(recipe, n: int = 8, videos_only: bool = False) -> TrainParts:
    from tempflex.train.build import build_model

    model, processor = build_model(recipe.model, recipe.seed)
    budgets = recipe.cotrain.budgets if recipe.cotrain else None
    dataset = TinyConversations(processor, n=n, seed=recipe.seed, budgets=budgets, videos_only=videos_only)
    return TrainParts(model, processor, dataset, partial(collate, pad_token_id=processor.tokenizer.pad_token_id),
                      dataset.lengths)


def launch(recipe: Path, env: dict | None = None, **popen) -> subprocess.Popen:
    """This file's runner on ``recipe`` in a new process (one thread, deterministic algorithms)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, __file__, str(recipe)], env=env, cwd=ROOT, **popen)


def kill_mid_checkpoint(recipe: Path, step: int) -> None:
    """Run ``recipe`` and SIGKILL it while checkpoint ``step`` is half written (optimizer state on disk, model and
    position not yet): the test hook of ``tempflex.train.checkpoint`` holds the writer there."""
    proc = launch(recipe, env={DELAY_ENV: f"{step}:120"})
    tmp_dir = load_recipe(recipe).output_dir / f".tmp-checkpoint-{step}"
    deadline = time.monotonic() + 240
    while not (tmp_dir / "optimizer.bin").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, f"the run ended before writing checkpoint {step}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@contextmanager
def one_thread() -> Iterator[None]:
    """Golden values were recorded on one thread: float sums depend on how a reduction is split over threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def assert_matches_golden(log: Path, golden: Path) -> None:
    """Every golden number of every step of a run's log.jsonl (losses, loss terms, gradient norm, learning rates)
    to 1e-6, relative or absolute; the golden files hold no timings."""
    got = [json.loads(x) for x in log.read_text().splitlines()]
    want = [json.loads(x) for x in golden.read_text().splitlines()]
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        for key, value in w.items():
            if isinstance(value, (dict, float)):  # a dict: learning rates or loss parts
                assert g[key] == pytest.approx(value, rel=1e-6, abs=1e-6), (w["step"], key)
            else:
                assert g[key] == value, (w["step"], key)


def main(argv: list[str]) -> None:
    torch.use_deterministic_algorithms(True)
    n = 8
    overrides = []
    for item in argv[1:]:
        if item.startswith("--n="):
            n = int(item[4:])
        else:
            overrides.append(item)
    recipe = load_recipe(argv[0], overrides)
    train(recipe, parts_for(recipe, n=n) if recipe.objective == "lm" else None)


if __name__ == "__main__":
    main(sys.argv[1:])
