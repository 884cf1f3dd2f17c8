"""Batching: right-padded text, visual tensors concatenated in order, and a length-grouped sharded sampler."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from tempflex.train.tokenize import IGNORE_INDEX

VISUAL_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw")


def collate(examples: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor | int]:
    """Examples of different lengths and visual token counts -> one batch for the model's forward.

    input_ids/labels/attention_mask: (B, L_max), padded on the right (labels with -100). The visual tensors of
    all examples are concatenated in example order, which is the order of their placeholders in the batch.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    length = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n], labels[row, :n], mask[row, :n] = e["input_ids"], e["labels"], 1
    batch: dict[str, torch.Tensor | int] = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    for key in VISUAL_KEYS:
        parts = [e[key] for e in examples if key in e]
        if parts:
            batch[key] = torch.cat(parts)
    batch["num_visual_tokens"] = sum(int(e.get("num_visual_tokens", 0)) for e in examples)
    return batch


class LengthGroupedSampler(Sampler[list[int]]):
    """A batch sampler (``DataLoader(batch_sampler=...)``): micro-batches of similar length, shuffled, sharded
    over ``num_replicas`` ranks; deterministic per epoch.

    One optimizer step takes ``per_step`` micro-batches (default ``num_replicas``) of ``batch_size`` samples: a
    step of S = batch_size * per_step samples. Per epoch a seeded permutation is cut into mega-batches of
    ``S * mega`` samples, each sorted by length (longest first) and cut into steps of S; the steps are shuffled and
    a last partial step is dropped (like ``drop_last``). Each step is cut into micro-batches in order, and
    micro-batch k goes to rank k % num_replicas. Which samples form a step depends only on S, never on the
    micro-batch size or the number of ranks, so any split of one global batch trains on the same data.
    ``group_by_length=False`` keeps the seeded shuffle without sorting.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        group_by_length: bool = True,
        mega: int = 16,
        per_step: int | None = None,
    ) -> None:
        if batch_size < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"bad sampler setup: batch_size={batch_size}, rank={rank}, num_replicas={num_replicas}")
        per_step = num_replicas if per_step is None else per_step
        if per_step < 1 or per_step % num_replicas:
            raise ValueError(f"per_step={per_step} micro-batches must be a positive multiple of {num_replicas} ranks")
        if not lengths:
            raise ValueError("the dataset is empty")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.rank, self.num_replicas = batch_size, seed, rank, num_replicas
        self.group_by_length, self.mega, self.per_step = group_by_length, mega, per_step
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def micro_batches(self) -> list[list[int]]:
        """All ranks' micro-batches of this epoch, in global order, whole steps only."""
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        step = self.batch_size * self.per_step
        steps: list[np.ndarray] = []
        for start in range(0, len(order), step * self.mega):
            block = order[start : start + step * self.mega]
            if self.group_by_length:
                block = block[np.argsort(-self.lengths[block], kind="stable")]
            steps += [block[i : i + step] for i in range(0, len(block), step) if len(block) - i >= step]
        if self.group_by_length:
            steps = [steps[i] for i in rng.permutation(len(steps))]
        return [s[i : i + self.batch_size].tolist() for s in steps for i in range(0, step, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for k, batch in enumerate(self.micro_batches()):
            if k % self.num_replicas == self.rank:
                yield batch

    def __len__(self) -> int:
        """Micro-batches of this rank per epoch."""
        return len(self.micro_batches()) // self.num_replicas
