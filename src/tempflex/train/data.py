"""The training dataset: a mixture of conversation records -> model-ready examples.

``ConversationDataset(mixture, processor, max_length=..., num_frames=64, seed=0)`` samples the mixture once
(deterministically), measures every record's sequence length from its text and its media headers (no decoding),
and drops the records whose visual tokens would not fit in ``max_length`` (a cut never falls inside a run of
visual placeholders; ``stats`` counts them). ``dataset[i]`` decodes the media, encodes the conversation with labels
on the assistant answers only, and shortens the text after the last visual token if the sequence is too long
(counted in ``stats`` too; with DataLoader workers those per-item counts stay in the workers). The headers are read
once per mixture file and cached beside it (``tempflex.train.lengths``), shared by the ranks and later runs. With
``cotrain_budgets`` it returns one example per per-frame token budget, the largest first (FluxViT
multi-token-count co-training); with ``flexible`` too, each view is capped by the flexible plan's budget. With
``cotrain_select`` other than ``resize`` it returns the largest budget's view alone (a one-item list): the smaller
views are selected from its tokens in the forward (``tempflex.train.select``).
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
from tempflex.samples import MediaSize
from tempflex.train.lengths import cache_for, media_sizes
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
        want = spec.count if spec.count is not None else max(1, round((spec.weight or 1.0) * len(records)))
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
        answer_tokens: int | None = None,
        cotrain_select: str = "resize",
        size_cache: Path | bool = True,
    ) -> None:
        """``size_cache``: the media size cache file; True: beside the mixture file (given as a path); False: none."""
        self.processor = processor
        self.answer_tokens = answer_tokens
        self.max_length = max_length
        self.num_frames = num_frames
        self._budget_processors: dict[int, TempFlexProcessor] = {}
        self.seed = seed
        self.flexible = flexible
        self.budgets = sorted(cotrain_budgets, reverse=True) if cotrain_budgets else None
        # the views the dataset makes: one per budget, or (a selection in the forward) only the largest
        self.views = self.budgets if cotrain_select == "resize" or self.budgets is None else self.budgets[:1]
        self.epoch = 0
        if size_cache is True:
            size_cache = False if isinstance(mixture, Mixture) else cache_for(mixture)
        mixture = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
        self.stats: Counter[str] = Counter()
        self.records: list[Record] = []
        self.lengths: list[int] = []
        sampled = sample_mixture(mixture, seed)
        media = (path for record in sampled for path in record.images + record.videos)
        self._sizes: dict[Path, MediaSize] = media_sizes(media, size_cache or None)
        for record in sampled:
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
        text and the media headers, at the largest frame count and per-frame budget any view of it can get."""
        visual = 0
        for path in record.images:
            width, height, *_ = self._sizes[path]
            visual += self.processor.image_grid(height, width).tokens
        frames_cap = self.flexible.max_frames if self.flexible else self.num_frames
        frame_grid = self._with_budget(self._largest_frame_budget()).frame_grid
        for path in record.videos:
            width, height, frames, _ = self._sizes[path]
            count = min(frames_cap, frames or frames_cap)
            visual += count * (frame_grid(height, width).tokens + 1)
        text = self.processor.apply_chat_template(record.messages(), add_generation_prompt=False)
        last = max(text.rfind(IMAGE_PLACEHOLDER), text.rfind(VIDEO_PLACEHOLDER))
        count = self._count_text
        return visual, count(text[:last]) if last > 0 else 0, count(text)

    def _largest_frame_budget(self) -> int:
        budget = self.processor.settings.video_max_tokens_per_frame
        if self.flexible is not None:  # plan_grid never exceeds (R_max / unit)^2 tokens a frame
            budget = (self.flexible.max_resolution // self.flexible.unit) ** 2
        if self.budgets is not None:
            budget = min(budget, self.budgets[0]) if self.flexible is not None else self.budgets[0]
        return budget

    def _count_text(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- examples ------------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Flexible sampling draws anew every epoch (call before creating the epoch's DataLoader)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict | list[dict]:
        record = self.records[index]
        plan = sample_plan(self.flexible, self._rng(index)) if self.flexible is not None else None
        frames = plan.num_frames if plan is not None else self.num_frames
        images = [load_image(p) for p in record.images]
        clips = [load_video(p, num_frames=frames).to_clip() for p in record.videos]
        flex_budget = plan_grid(plan, *clips[0].size).tokens if plan is not None and clips else None
        if self.budgets is None:
            return self._example(record, flex_budget, images, clips)
        return [self._example(record, b if flex_budget is None else min(b, flex_budget), images, clips)
                for b in self.views]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def _with_budget(self, budget: int | None) -> TempFlexProcessor:
        """The processor with at most ``budget`` tokens a video frame (None: the processor as configured)."""
        if budget is None:
            return self.processor
        if budget not in self._budget_processors:  # one per budget: a processor's set-up reads the vocabulary
            settings = self.processor.settings
            lowest = min(settings.video_min_tokens_per_frame, budget)
            self._budget_processors[budget] = TempFlexProcessor(
                self.processor.tokenizer,
                dataclasses.replace(settings, video_max_tokens_per_frame=budget, video_min_tokens_per_frame=lowest),
            )
        return self._budget_processors[budget]

    def _example(self, record: Record, budget: int | None, images, clips) -> dict:
        processor = self._with_budget(budget)
        media = processor.encode_media(images, clips)
        encoded = encode_conversation(processor, record.messages(), media, self.answer_tokens)
        ids, labels = encoded.input_ids, encoded.labels
        if len(ids) > self.max_length:
            ids, labels = self._shorten(ids, labels, record)
        example = {"input_ids": ids, "labels": labels, **media.tensors()}
        m = processor.settings.merge_size**2
        example["num_visual_tokens"] = sum(
            int(example[k].prod(-1).sum()) // m for k in ("image_grid_thw", "video_grid_thw") if k in example
        )
        return example

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

