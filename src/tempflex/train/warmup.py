"""Stage 0: warm a from-scratch visual path (encoder, TFF, merger) on multiple-choice records, without the LLM.

Why: a from-scratch encoder trained through a frozen LLM collapses to a constant soft prompt (docs/tempflex_tiny.md,
findings 3-5). SigLIP2 itself is pretrained before any LLM reads it; tempflex-tiny's encoder gets the same kind of
start, supervised by the probes' questions: a small head (``OptionHead``) reads all merged tokens of a video in
order, adds the question (the mean of its tokens' frozen LLM input embeddings), and scores the record's options,
each a row of a classifier over every option text of the data; cross-entropy over the record's own options. The
head is thrown away afterwards; the encoder, TFF and merger keep what they learned. The LLM's layers never run, so
a step of 32 videos takes 0.6 s here against 3 s for 8 through Gemma3-270M.

The loss has up to four terms (weights in the recipe's ``warmup`` block), each added after a measured failure of
the ones before (docs/tempflex_tiny.md):

- ``choice``: the head's cross-entropy over the record's options.
- ``variance``: VICReg's variance hinge (Bardes et al., 2022) on the merged tokens, with the LLM's embedding spread
  as its target. The head alone let the tokens stay nearly constant (it standardises its input): after 600 steps
  they differed between videos by 0.07 per dimension around a common token of norm 9, while the LLM's own word
  embeddings differ by 0.92, and the frozen LLM read 64 near-copies of one token.
- ``said``: every merged token of a video is drawn to the frozen LLM's input embedding of the token it answers the
  record's question with (the first token of the right option under the chat template, the token multiple-choice
  scoring reads), squared distance in units of the LLM's embedding spread. Why: with those embeddings in place of
  the visual tokens, the frozen Gemma3-270M picks the right option for 88 % of 150 validation questions (a copy it
  can make in context), while an earlier term that only asked the mean token to point at the answer's direction
  left stage 1 at chance (docs/tempflex_tiny.md).
- ``bridge``: for a model with a word bridge, the bridge's cross-entropy over the LLM's vocabulary on that same
  token (``tempflex.bridge``); the said term alone moved the tokens too slowly.

Measured on the probes (docs/tempflex_tiny.md): learning rate 1e-3 stayed at chance for 300 steps with all ten
skills mixed (one skill alone learned), 3e-4 and 5e-4 learned; standardising the head's input over the batch
(BatchNorm) cut the plateau before learning starts from ~100 steps to ~25.

Shapes: B videos, V merged tokens per video, E LLM width, K options, F frames, P patches per frame, C patch pixels.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F_
from torch import nn

from tempflex.train.params import train_mode
from tempflex.video import load_video


class OptionHead(nn.Module):
    """A classifier over every option text of the training records, read from all of a video's merged tokens
    in order (time and place matter), conditioned on the question; each record scores only its own options."""

    def __init__(self, width: int, tokens: int, vocab: int, project: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.project = nn.Linear(width, project)  # per token E -> p
        # batch statistics: a video's tokens are nearly the same for every video at initialisation (spread ~0.2 of
        # their mean); standardising each feature over the batch lets the head see the differences from step 1
        self.standardise = nn.BatchNorm1d(tokens * project)
        self.read = nn.Linear(tokens * project, hidden)
        self.ask = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.classify = nn.Sequential(nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, vocab))

    def forward(self, tokens: torch.Tensor, question: torch.Tensor, options: torch.Tensor,
                option_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, V, E), question (B, E), options (B, K) vocabulary ids, option_mask (B, K) -> logits (B, K)."""
        h = self.read(self.standardise(self.project(tokens).flatten(1))) + self.ask(question)  # (B, hidden)
        logits = self.classify(h).gather(1, options)  # (B, K)
        return logits.masked_fill(~option_mask, float("-inf"))


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
    from rich.progress import track

    from tempflex.answers import answer_tokens

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
    for r in track(records, description="decoding videos", disable=not progress):
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


def said_distance(tokens: torch.Tensor, said: torch.Tensor, spread: float) -> torch.Tensor:
    """Mean squared distance of every merged token to its video's answer token embedding, per dimension, in units
    of the LLM's embedding spread: tokens (B, V, E), said (B, E) -> scalar (0 when every token is the word)."""
    return (tokens - said[:, None]).pow(2).mean() / spread**2


def embedding_spread(model, sample: int = 4096) -> float:
    """RMS over dimensions of the per-dimension std of the LLM's input embeddings (Gemma3-270M: 0.92): how much
    tokens the LLM reads differ from each other, in its own units."""
    table = model.get_input_embeddings()
    ids = torch.linspace(0, table.num_embeddings - 1, min(sample, table.num_embeddings)).long()
    with torch.no_grad():
        return float(table(ids).std(0).pow(2).mean().sqrt())


def variance_hinge(tokens: torch.Tensor, target: float) -> torch.Tensor:
    """VICReg's variance term: mean over dimensions of relu(target - std over the batch's tokens); tokens (B, V, E)."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    return F_.relu(target - (flat.var(0) + 1e-4).sqrt()).mean()


def visual_tokens(model, patches: torch.Tensor, grids: torch.Tensor, n: int, queries: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Packed patches of n equal-size videos (and their prompts' queries (n, E)) -> merged tokens (n, V, E), with
    the word of the model's bridge added, and the bridge's logits (n, W) (None without a bridge)."""
    tokens = model.get_visual_features(patches, grids, video=True)  # (n*V, E)
    logits = None
    if model.bridge is not None:
        tokens, logits = model.bridge.apply(tokens, grids, model.get_input_embeddings(), queries)
    return tokens.view(n, -1, model.config.text_config.hidden_size), logits


@torch.no_grad()
def option_accuracy(model, head: OptionHead, data: OptionBatchSource, batch: int = 64) -> dict[str, float]:
    """Accuracy of the head's choice per skill, and over all records ('all')."""
    model.eval(), head.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    for start in range(0, len(data), batch):
        index = torch.arange(start, min(start + batch, len(data)))
        patches, grids, q, o, m, a, _, prompt = data.batch(index)
        logits = head(visual_tokens(model, patches, grids, len(index), prompt)[0], q, o, m)
        for i, ok in zip(index.tolist(), (logits.argmax(-1) == a).tolist()):
            hits[data.skills[i]].append(int(ok))
            hits["all"].append(int(ok))
    train_mode(model), head.train()
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


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


class OptionTrainer:
    """Stage 0 from a recipe (``objective: options``): the loop, checkpoints every ``checkpoint.every`` steps
    (atomic; ``resume: auto`` continues from the latest), ``log.jsonl`` and ``final/`` like ``tempflex train``.

    Single process. What the recipe sets: ``optim.lr`` per module (vision_tower, temporal, merger; the head
    takes the largest), ``optim.weight_decay/betas/grad_clip``, ``schedule.max_steps/warmup_ratio``,
    ``batch.global_batch`` (videos a step), ``data.mixture/num_frames``, ``warmup`` (the loss weights and a
    curriculum: phases that draw from named datasets of the mixture before the whole of it), ``seed``, ``output_dir``.
    """

    def __init__(self, recipe, progress: bool = True, data: OptionBatchSource | None = None) -> None:
        from tempflex.train.build import build_model
        from tempflex.train.params import apply_freeze, param_groups

        if recipe.schedule.max_steps is None:
            raise ValueError("schedule.max_steps: the options objective needs a step count")
        if recipe.optim.trains("language_model"):
            raise ValueError("optim.lr.language_model: the options objective never runs the LLM's layers")
        self.recipe, self.progress = recipe, progress
        torch.manual_seed(recipe.seed)
        self.model, self.processor = build_model(recipe.model, recipe.seed)
        apply_freeze(self.model, recipe.optim)
        if data is None:  # ``data``: the same mixture already decoded (the ablation trains 8 models on it)
            records, roots, names = option_records(recipe.data.mixture)
            _check_curriculum(recipe, names)  # before minutes of decoding
            data = _load_grouped(records, roots, names, self.model, self.processor, recipe.data.num_frames,
                                 progress)
        self.data = data
        self.phases = self._curriculum()
        tokens = self.data.patches.shape[1] // self.model.config.merge_size ** 2
        self.head = OptionHead(self.model.config.text_config.hidden_size, tokens, len(self.data.vocab))
        groups = param_groups(self.model, recipe.optim)
        head_params = list(self.head.parameters())
        # the head learns at the largest module rate (a dotted part's own rate, e.g. a scalar's, is not a module's)
        modules = [lr for name, lr in recipe.optim.lr.items() if "." not in name] or list(recipe.optim.lr.values())
        groups += [{"params": [p for p in head_params if p.ndim >= 2], "lr": max(modules),
                    "weight_decay": recipe.optim.weight_decay, "name": "head"},
                   {"params": [p for p in head_params if p.ndim < 2], "lr": max(modules),
                    "weight_decay": 0.0, "name": "head"}]
        self.params = [p for g in groups for p in g["params"]]
        self.optim = torch.optim.AdamW(groups, betas=recipe.optim.betas, eps=recipe.optim.eps)
        from transformers import get_cosine_schedule_with_warmup

        steps = recipe.schedule.max_steps
        self.sched = get_cosine_schedule_with_warmup(self.optim, math.ceil(recipe.schedule.warmup_ratio * steps),
                                                     steps)
        self.out = Path(recipe.output_dir)
        self.target = embedding_spread(self.model)

    def _curriculum(self) -> list[tuple[int, torch.Tensor]]:
        """(last step, the records it draws from as indices into ``self.data``) for each phase of the recipe's
        curriculum, in order (checked against ``self.data``, which the caller may have decoded)."""
        sources, plan, end = self.data.sources or [], [], 0
        _check_curriculum(self.recipe, sources)
        for phase in self.recipe.warmup.curriculum:
            end += phase.steps
            plan.append((end, torch.tensor([i for i, n in enumerate(sources) if n in phase.datasets])))
        return plan

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _latest(self) -> Path | None:
        found = sorted((int(p.name.split("-")[1]), p) for p in self.out.glob("checkpoint-*")
                       if (p / "state.pt").is_file())
        return found[-1][1] if found else None

    def _save(self, step: int, gen: torch.Generator) -> None:
        from tempflex.train.checkpoint import publish

        target, tmp = self.out / f"checkpoint-{step}", self.out / f".tmp-checkpoint-{step}"
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save({"step": step, "model": self.model.state_dict(), "head": self.head.state_dict(),
                    "optim": self.optim.state_dict(), "sched": self.sched.state_dict(), "gen": gen.get_state()},
                   tmp / "state.pt")
        publish(tmp, target)
        for old in self.out.glob("checkpoint-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)

    def _resume(self, gen: torch.Generator) -> int:
        resume = self.recipe.resume
        path = self._latest() if resume == "auto" else Path(resume) if resume else None
        if path is None:
            return 0
        state = torch.load(path / "state.pt", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optim.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        print(f"resumed from {path} at step {state['step']}")
        return state["step"]

    # -- the run --------------------------------------------------------------------------------------------------
    def run(self) -> Path:
        from rich.progress import Progress

        from tempflex.train.checkpoint import publish

        recipe, steps, batch = self.recipe, self.recipe.schedule.max_steps, self.recipe.batch.global_batch
        for stale in self.out.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.out.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(recipe.seed)
        start = self._resume(gen)
        train_mode(self.model), self.head.train()
        with Progress(disable=not self.progress) as bar, (self.out / "log.jsonl").open("a") as log:
            task = bar.add_task("warm-up (options)", total=steps, completed=start)
            for step in range(start + 1, steps + 1):
                t0 = time.perf_counter()
                pool = next((p for end, p in self.phases if step <= end), None)  # None: the whole mixture
                if pool is None:
                    index = torch.randint(0, len(self.data), (batch,), generator=gen)
                else:
                    index = pool[torch.randint(0, len(pool), (batch,), generator=gen)]
                patches, grids, q, o, m, a, said, prompt = self.data.batch(index)
                tokens, said_logits = visual_tokens(self.model, patches, grids, batch, prompt)  # (B, V, E), (B, W)
                logits = self.head(tokens, q, o, m)
                choice = F_.cross_entropy(logits, a)
                spread = variance_hinge(tokens, self.target)
                with torch.no_grad():
                    words = self.model.get_input_embeddings()(said)  # (B, E), scaled as the LLM reads them
                distance = said_distance(tokens, words, self.target)
                w = recipe.warmup
                loss = w.choice * choice + w.variance * spread + w.said * distance
                if said_logits is not None:  # the word bridge says the answer's token
                    read = F_.cross_entropy(said_logits.float(), said)
                    loss = loss + w.bridge * read
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.params, recipe.optim.grad_clip or math.inf)
                self.optim.step(), self.sched.step()
                bar.advance(task)
                if step % recipe.log.every == 0 or step == steps:
                    record = {"step": step, "total_steps": steps, "loss": loss.item(), "choice": choice.item(),
                              "variance": spread.item(), "said": distance.item(),
                              "bridge": read.item() if said_logits is not None else None,
                              "batch_accuracy": (logits.argmax(-1) == a).float().mean().item(),
                              "grad_norm": float(norm), "seconds": time.perf_counter() - t0}
                    log.write(json.dumps(record) + "\n"), log.flush()
                    bar.console.print(f"step {step}/{steps} loss {record['loss']:.3f} "
                                      f"batch accuracy {record['batch_accuracy']:.2f}")
                every = recipe.checkpoint.every
                if every and step % every == 0 and step < steps:
                    self._save(step, gen)
        tmp, final = self.out / ".tmp-final", self.out / "final"
        self.model.save_pretrained(tmp)
        self.processor.save_pretrained(tmp)
        publish(tmp, final)
        return final


def _check_curriculum(recipe, names: list[str]) -> None:
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


def _load_grouped(records: list[dict], roots: list[Path], names: list[str], model, processor, frames: int,
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
        _pad_cat([p.options for p in parts]), _pad_cat([p.option_mask for p in parts]),
        torch.cat([p.answer for p in parts]), [s for p in parts for s in p.skills], vocab,
        torch.cat([p.said for p in parts]),
        None if parts[0].prompt is None else torch.cat([p.prompt for p in parts]), sources,
    )


def _pad_cat(tensors: list[torch.Tensor]) -> torch.Tensor:
    width = max(t.shape[1] for t in tensors)
    return torch.cat([F_.pad(t, (0, width - t.shape[1])) for t in tensors])
