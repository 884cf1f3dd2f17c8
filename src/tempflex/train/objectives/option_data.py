"""The options objective's data: multiple-choice records decoded once into patches, with their question, option and
answer-token embeddings (``OptionBatchSource``), read from a recipe's mixture.

Shapes: N records, K options, E LLM width, F frames, P patches per frame, C patch pixels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F_

from tempflex.train.recipe import Recipe


@dataclass
class OptionBatchSource:
    """Decoded, patchified videos of multiple-choice records, with their question and option embeddings."""

    patches: torch.Tensor  # (N, F*P, C) float16
    grid: list[int]  # [F, h, w], the same for every video
    question: torch.Tensor  # (N, E) mean input embedding of the question's tokens
    options: torch.Tensor  # (N, K) each option's index in ``vocab`` (0 where absent)
    option_mask: torch.Tensor  # (N, K) bool
    answer: torch.Tensor  # (N,) index of the right option
    skills: list[str]  # (N,)
    vocab: list[str]  # every option text, in a fixed order
    said: torch.Tensor  # (N,) the LLM token id the right answer starts with (``tempflex.answers.answer_tokens``)
    prompt: torch.Tensor | None  # (N, E) each record's prompt as the bridge reads it; None if it reads none
    sources: list[str] | None = None  # (N,) the mixture dataset each record comes from, when loaded from one

    def __len__(self) -> int:
        return len(self.skills)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(packed patches (n*F*P, C), grids (n, 3), question (n, E), options (n, K), option_mask, answer (n,),
        said (n,), prompt (n, E))."""
        grids = torch.tensor([self.grid] * len(index))
        return (self.patches[index].float().flatten(0, 1), grids, self.question[index], self.options[index],
                self.option_mask[index], self.answer[index], self.said[index],
                None if self.prompt is None else self.prompt[index])


@torch.no_grad()
def load_option_records(records: list[dict], root: Path, model, processor, frames: int, vocab: list[str] | None = None,
                        progress: bool = True) -> OptionBatchSource:
    """Decode and patchify every record's video; embed the questions with the model's frozen LLM table (and, for
    a bridge that reads prompts, each whole prompt as the model reads it at inference: ``bridge_queries`` of the
    chat-rendered, expanded first turn); index the options in ``vocab`` (default: the records' own option texts,
    sorted)."""
    from tempflex.answers import answer_tokens
    from tempflex.progress import tracked
    from tempflex.video import load_video

    embed = model.get_input_embeddings()
    tok = processor.tokenizer
    width = max(len(r["options"]) for r in records)
    vocab = vocab or sorted({o for r in records for o in r["options"]})
    index = {o: i for i, o in enumerate(vocab)}
    unknown = {o for r in records for o in r["options"]} - set(index)
    if unknown:
        raise ValueError(f"options not in the warm-up vocabulary: {sorted(unknown)[:5]}")
    patches, questions, options, masks, answers, said, prompts, grid = [], {}, [], [], [], [], [], None
    spoken: dict[tuple[str, ...], list[int]] = {}
    for r in tracked(records, "decoding videos", show=progress, transient=False):
        clip = load_video(root / r["video"], num_frames=frames)
        media = processor.encode_media(videos=[clip])
        if grid is None:
            grid = media.video_grids[0]
        elif media.video_grids[0] != grid:
            raise ValueError(f"{r['video']}: grid {media.video_grids[0]} differs from {grid}; warm-up batches "
                             "videos of one size")
        patches.append(media.video_patches[0].half())
        if model.bridge is not None and model.bridge.reads_prompts:
            text = processor.apply_chat_template([{"role": "user", "content": r["conversations"][0]["value"]}])
            expanded = tok(processor.expand_text([text], media)[0], add_special_tokens=False, return_tensors="pt")
            prompts.append(model.bridge_queries(expanded.input_ids)[0])  # (E,)
        if r["question"] not in questions:
            ids = torch.tensor(tok(r["question"], add_special_tokens=False).input_ids)
            questions[r["question"]] = embed(ids).mean(0)
        row = torch.zeros(width, dtype=torch.long)
        row[: len(r["options"])] = torch.tensor([index[o] for o in r["options"]])
        options.append(row)
        masks.append(torch.arange(width) < len(r["options"]))
        answers.append(r["answer_index"])
        key = tuple(r["options"])
        if key not in spoken:
            spoken[key] = answer_tokens(processor, r["options"]).ids
        said.append(spoken[key][r["answer_index"]])
    return OptionBatchSource(
        torch.stack(patches), grid, torch.stack([questions[r["question"]] for r in records]),
        torch.stack(options), torch.stack(masks), torch.tensor(answers), [r["skill"] for r in records], vocab,
        torch.tensor(said), torch.stack(prompts) if prompts else None,
    )


def option_records(mixture_path: Path) -> tuple[list[dict], list[Path], list[str]]:
    """Every record of a mixture's datasets with the fields the option loss needs, each one's media root and
    dataset name."""
    from tempflex.train.records import load_mixture, read_raw

    records, roots, names = [], [], []
    for spec in load_mixture(mixture_path).datasets:
        for position, raw in read_raw(spec.path):
            missing = [k for k in ("video", "question", "options", "answer_index", "skill") if not
                       (isinstance(raw, dict) and k in raw)]
            if missing:
                raise ValueError(f"{spec.path}: record {position}: no {missing[0]!r}; the options objective needs "
                                 "multiple-choice records (tempflex probes generate)")
            records.append(raw)
            roots.append(spec.media_root or spec.path.parent)
            names.append(spec.name)
    return records, roots, names



def check_curriculum(recipe: Recipe, names: list[str]) -> None:
    """A curriculum names datasets of the mixture and leaves steps for the whole of it."""
    phases = recipe.warmup.curriculum
    have = list(dict.fromkeys(names))
    for k, phase in enumerate(phases):
        unknown = [n for n in phase.datasets if n not in have]
        if unknown:
            raise ValueError(f"warmup.curriculum[{k}].datasets: no dataset {unknown[0]!r} in the mixture (it has: "
                             f"{', '.join(have) or 'none'})")
    steps = sum(p.steps for p in phases)
    if phases and steps >= recipe.schedule.max_steps:
        raise ValueError(f"warmup.curriculum: its {steps} steps leave none of the {recipe.schedule.max_steps} for the "
                         "whole mixture")


def load_grouped(records: list[dict], roots: list[Path], names: list[str], model, processor, frames: int,
                  progress: bool) -> OptionBatchSource:
    """``load_option_records`` over the records of several datasets (each with its media root), joined; each
    record keeps its dataset's name."""
    parts, sources = [], []
    groups: dict[tuple[Path, str], list[dict]] = defaultdict(list)
    for record, root, name in zip(records, roots, names):
        groups[Path(root), name].append(record)
    vocab = sorted({o for r in records for o in r["options"]})
    for (root, name), members in groups.items():
        parts.append(load_option_records(members, root, model, processor, frames, vocab, progress))
        sources += [name] * len(members)
    if len(parts) == 1:
        parts[0].sources = sources
        return parts[0]
    if any(p.grid != parts[0].grid for p in parts):
        raise ValueError(f"the datasets' videos give different grids ({[p.grid for p in parts]}); warm-up batches "
                         "videos of one size")
    return OptionBatchSource(
        torch.cat([p.patches for p in parts]), parts[0].grid, torch.cat([p.question for p in parts]),
        pad_cat([p.options for p in parts]), pad_cat([p.option_mask for p in parts]),
        torch.cat([p.answer for p in parts]), [s for p in parts for s in p.skills], vocab,
        torch.cat([p.said for p in parts]),
        None if parts[0].prompt is None else torch.cat([p.prompt for p in parts]), sources,
    )


def pad_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([F_.pad(t, (0, width - t.shape[1])) for t in tensors])


def load_recipe_records(recipe: Recipe, model, processor, progress: bool = True) -> OptionBatchSource:
    """Every record of the recipe's mixture decoded at ``data.num_frames``; the curriculum is checked against the
    mixture's dataset names first (before minutes of decoding)."""
    records, roots, names = option_records(recipe.data.mixture)
    check_curriculum(recipe, names)
    return load_grouped(records, roots, names, model, processor, recipe.data.num_frames, progress)
