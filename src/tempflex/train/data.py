"""The training dataset: a mixture of conversation records -> model-ready examples.

``ConversationDataset(mixture, processor, max_length=..., num_frames=64, seed=0)`` samples the mixture once
(deterministically), measures every record's sequence length from its text and its media headers (no decoding),
and drops the records whose visual tokens would not fit in ``max_length`` (a cut never falls inside a run of
visual placeholders; ``stats`` counts them). ``dataset[i]`` decodes the media, encodes the conversation with labels
on the assistant answers only, and shortens the text after the last visual token if the sequence is too long
(counted in ``stats`` too). With ``cotrain_budgets`` it returns one example per per-frame token budget, the
largest first (FluxViT multi-token-count co-training).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tempflex.image import load_image
from tempflex.processing import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, TempFlexProcessor
from tempflex.samples import media_size
from tempflex.train.records import Mixture, Record, RecordError, load_mixture, parse_record, read_raw
from tempflex.train.tokenize import IGNORE_INDEX, encode_conversation
from tempflex.video import load_video
from tempflex.video.flexible import FlexibleSampling, plan_grid, sample_plan

__all__ = ["ConversationDataset", "load_mixture", "sample_mixture"]


def sample_mixture(mixture: Mixture, seed: int) -> list[Record]:
    """Every dataset's valid records, sampled by its weight or count, shuffled together (seeded)."""
    rng = np.random.default_rng(seed)
    chosen: list[Record] = []
    for spec in mixture.datasets:
        records = []
        for position, raw in read_raw(spec.path):
            try:
                records.append(parse_record(raw, spec.media_root, spec.name, position))
            except RecordError as err:
                raise ValueError(f"{spec.path}: record {position}: {err} (run `tempflex data check`)") from None
        if not records:
            raise ValueError(f"{spec.path}: no records")
        want = spec.count if spec.count is not None else round((spec.weight or 1.0) * len(records))
        whole, rest = divmod(want, len(records))
        picks = list(range(len(records))) * whole + sorted(rng.choice(len(records), rest, replace=False).tolist())
        chosen += [records[i] for i in picks]
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


class ConversationDataset(Dataset):
    """Map-style dataset of model-ready examples (see the module docstring)."""

    def __init__(
        self,
        mixture: Mixture | str | Path,
        processor: TempFlexProcessor,
        *,
        max_length: int,
        num_frames: int = 64,
        seed: int = 0,
        flexible: FlexibleSampling | None = None,
        cotrain_budgets: list[int] | None = None,
    ) -> None:
        self.processor = processor
        self.max_length = max_length
        self.num_frames = num_frames
        self.seed = seed
        self.flexible = flexible
        self.budgets = sorted(cotrain_budgets, reverse=True) if cotrain_budgets else None
        mixture = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
        self.stats: Counter[str] = Counter()
        self.records: list[Record] = []
        self.lengths: list[int] = []
        for record in sample_mixture(mixture, seed):
            visual, before, text = self._estimate(record)
            if visual and visual + before >= max_length:  # the cut would fall inside the visual tokens
                self.stats["dropped_too_long"] += 1
                continue
            self.records.append(record)
            self.lengths.append(min(visual + text, max_length))
        if not self.records:
            raise ValueError(f"no sample fits max_length={max_length} ({self.stats['dropped_too_long']} dropped)")

    def __len__(self) -> int:
        return len(self.records)

    # -- lengths from headers ------------------------------------------------------------------------------------
    def _estimate(self, record: Record) -> tuple[int, int, int]:
        """(visual tokens incl. frame separators, text tokens before the last media, all text tokens), from the
        text and the media headers only."""
        visual = 0
        for path in record.images:
            width, height, *_ = media_size(path)
            visual += self.processor.image_grid(height, width).tokens
        for path in record.videos:
            width, height, frames, _ = media_size(path)
            count = min(self.num_frames, frames or self.num_frames)
            visual += count * (self.processor.frame_grid(height, width).tokens + 1)
        text = self.processor.apply_chat_template(record.messages(), add_generation_prompt=False)
        last = max(text.rfind(IMAGE_PLACEHOLDER), text.rfind(VIDEO_PLACEHOLDER))
        count = self._count_text
        return visual, count(text[:last]) if last > 0 else 0, count(text)

    def _count_text(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- examples ------------------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict | list[dict]:
        record = self.records[index]
        images = [load_image(p) for p in record.images]
        clips = [load_video(p, num_frames=self._frames_for(index, p)).to_clip() for p in record.videos]
        if self.budgets is None:
            return self._example(record, self.processor, images, clips, index)
        settings = self.processor.settings
        return [
            self._example(record, self._with_budget(settings, b), images, clips, index) for b in self.budgets
        ]

    def _frames_for(self, index: int, path: Path) -> int:
        if self.flexible is None:
            return self.num_frames
        return sample_plan(self.flexible, self._rng(index)).num_frames

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, index))

    def _with_budget(self, settings, budget: int) -> TempFlexProcessor:
        lowest = min(settings.video_min_tokens_per_frame, budget)
        return TempFlexProcessor(
            self.processor.tokenizer,
            dataclasses.replace(settings, video_max_tokens_per_frame=budget, video_min_tokens_per_frame=lowest),
        )

    def _example(self, record: Record, processor: TempFlexProcessor, images, clips, index: int) -> dict:
        if self.flexible is not None and clips:
            processor = self._flexible_processor(processor, clips[0], index)
        media = processor.encode_media(images, clips)
        encoded = encode_conversation(processor, record.messages(), media)
        ids, labels = encoded.input_ids, encoded.labels
        if len(ids) > self.max_length:
            ids, labels = self._shorten(ids, labels, record)
        example = {"input_ids": ids, "labels": labels, **media.tensors()}
        m = processor.settings.merge_size**2
        example["num_visual_tokens"] = sum(
            int(example[k].prod(-1).sum()) // m for k in ("image_grid_thw", "video_grid_thw") if k in example
        )
        return example

    def _flexible_processor(self, processor: TempFlexProcessor, clip, index: int) -> TempFlexProcessor:
        """FluxViT flexible resolution: the plan's per-frame budget for this sample."""
        plan = sample_plan(self.flexible, self._rng(index))
        grid = plan_grid(plan, *clip.size)
        return self._with_budget(processor.settings, max(1, grid.tokens))

    def _shorten(self, ids: torch.Tensor, labels: torch.Tensor, record: Record) -> tuple[torch.Tensor, torch.Tensor]:
        visual = torch.isin(ids, torch.tensor([self.processor.image_token_id, self.processor.video_token_id,
                                               self.processor.frame_separator_token_id]))
        last = int(visual.nonzero().max()) if visual.any() else -1
        if last >= self.max_length:  # the header estimate missed (e.g. a variable-rate video): never cut visuals
            raise ValueError(f"record {record.id}: visual tokens end at {last}, beyond max_length={self.max_length}")
        self.stats["shortened"] += 1
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        if bool((labels == IGNORE_INDEX).all()):
            self.stats["shortened_without_answer"] += 1
        return ids, labels

