"""Accuracy against visual tokens per frame on the probes' test split, for the ways of spending a token budget.

Budgets are b = 1, 2, 4 tokens a frame over the model's 16 frames (B = 16 b: 16, 32, 64 visual tokens; 3 may be
asked for too); at the full 4 (B = 64, every token of every frame) all methods but ``drop`` and ``uniform-frames``
see the same tokens, a parity check.
Methods, all at the same B:

- ``uniform-frames``: fewer frames at full resolution, B/4 frames of 4 tokens through the processor's normal
  path (``load_video(num_frames=B // 4)``): what a user does without any reducer;
- ``uniform-tokens``: 16 frames, the ``uniform`` reducer (B tokens spread evenly over frames and places);
- ``flux``: 16 frames, FluxViT's group-dynamic selection (``flux``, 4 groups);
- ``drop``: 16 frames, TimeChat-Online's differential token drop (``drop``, threshold 0.9, its default mode; it
  may keep far fewer than B, which the table and the plot show as the tokens it really spent);
- ``drop-fill``: the same drop ranked to fill the budget (``mode=ratio,ratio=1``: the first frame whole, then the
  tokens that changed most, by cosine, up to B), so that it compares at equal spending;
- ``ata``: 16 frames, Tempo's adaptive allocation (``ata``, segments of 4 frames, relevance from the model's own
  yes/no answer per segment, water-filled into [2, 16] tokens a segment);
- ``ata-tempo``: Tempo's own ATA (allocator ``tempo``: linear map, scaled down only over budget, so it may spend
  less; each segment keeps its first k tokens, ``within=head``);
- the related methods (docs/budget.md, "The related methods"), each at its defaults except where a frame's 4
  tokens call for it: ``tome``, ``holitom``, ``kffocus``, ``scenetilling`` (content only), ``date``, ``f2c``
  (``min_frame_tokens=1``), ``bvllm`` (``frame_tokens=4``), the last three with per-frame relevance from the model.

Every question is scored as in ``tempflex probes eval``: one forward pass, the answer is the option whose first
answer token has the highest logit (``answer_tokens``; the right one is ``options[answer_index]``); methods that
hand the LLM the same input (at the full budget, most) share that forward, each charged its seconds. Visual tokens
are counted per question (asserted <= B). The model's processor writes no time
tags (``video_timestamps`` off), so the budget is all visual tokens; frame separators are not charged, as in the
paper's counts.
The model's word bridge (tempflex-tiny has one) reads only the tokens each method keeps (docs/budget.md, the
pipeline's step 5): nothing of a dropped token reaches the LLM.

    nice -n 10 .venv/bin/python benchmarks/budget_probes.py                   # the whole test split, b = 1, 2, 4
    nice -n 10 .venv/bin/python benchmarks/budget_probes.py --limit 100       # the first 100: 10 of each skill
    nice -n 10 .venv/bin/python benchmarks/budget_probes.py --limit 100 --alone   # seconds of each method alone

A question's cells are scored together by default (``score_batched``: equal prompts once, one bridge pass, one
forward per prompt length), which gives the same predictions as scoring each alone (checked on 420 rows: scores
within the 1e-4 rounding) and took 1.22x less CPU time (the first 8 questions, all 42 cells, the two runs side by
side: 149 s against 181 s of user time after start-up); ``--alone`` scores each cell by itself so that its seconds
are the method's own cost, the seconds the table reports.

The test split lists the 10 skills in turn, so the first N questions (``--limit``) hold N / 10 of each.
Writes benchmarks/results/budget_probes.json and .md (``--out``) and docs/img/budget_probes.png (``--plot``).
Each (method, budget) appends its rows to runs/budget/<model>-<hash>/<method>-<b>/rows.jsonl as they are scored
(``CellLog``): the same command rerun, or with a larger ``--limit``, computes only what is missing, and a second
run on the same cell while one runs stops with one line. Runs on disjoint ``--methods`` may go side by side (give
each its own ``--out``); a last run over all of them, with nothing left to compute, writes the full table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tempflex.answers import AnswerTokens, answer_tokens, with_lead
from tempflex.atomic import OutputLocked, exclusive_output, write_text_atomic
from tempflex.budget.pipeline import PlannedPrompt, finish, remembered
from tempflex.eval.stats import sign_test
from tempflex.probes.evaluate import (
    EvalReport,
    Prediction,
    read_split,
    score_questions,
    summarise,
    wilson,
)
from tempflex.video import load_video

ROOT = Path(__file__).resolve().parents[1]
TOKENS_PER_FRAME = 4  # merged tokens of one 64x64 frame (2x2 after the 2x2 merge of a 4x4 patch grid)
METHODS: dict[str, str | None] = {  # name -> budget spec ({budget} filled in); None: fewer frames, no reducer
    "uniform-frames": None,
    "uniform-tokens": "uniform:{budget}",
    "flux": "flux:{budget},groups=4",
    "drop": "drop:{budget},mode=threshold,threshold=0.9",
    "drop-fill": "drop:{budget},mode=ratio,ratio=1.0",
    "ata": "ata:{budget},segment_frames=4",
    "ata-tempo": "ata:{budget},segment_frames=4,allocator=tempo,within=head",
    "tome": "tome:{budget}",
    "holitom": "holitom:{budget}",
    "kffocus": "kffocus:{budget}",
    "scenetilling": "scenetilling:{budget}",
    "date": "date:{budget}",
    "f2c": "f2c:{budget},min_frame_tokens=1",
    "bvllm": "bvllm:{budget},frame_tokens=4",
}
TIMING = "alone+batched"  # rows' seconds: the method alone (shared stages charged), relevance batched; older
# rows (one bridge read per segment) are left out of the seconds
CACHE_VERSION = 3  # part of the cache key: bump when scoring changes (2: answers are the options' text; 3: a word
# bridge reads only the kept tokens)


@dataclass(frozen=True)
class Cell:
    """One (method, budget) of the table."""

    method: str
    per_frame: int  # b: visual tokens a frame
    frames: int  # frames of the full clip (16)

    @property
    def budget(self) -> int:
        return self.per_frame * self.frames  # B

    @property
    def spec(self) -> str | None:
        template = METHODS[self.method]
        return None if template is None else template.format(budget=self.budget)

    @property
    def decoded_frames(self) -> int:
        return self.budget // TOKENS_PER_FRAME if self.spec is None else self.frames


def option_scores(model, inputs: dict, answer: AnswerTokens) -> list[float]:
    """Log-softmax over the options' first answer tokens at the answer position of one prompt (batch of 1)."""
    out = model(**with_lead(inputs, answer.lead, model), use_cache=False, logits_to_keep=1)
    logits = out.logits[0, -1].float()  # (V,)
    return torch.log_softmax(logits[answer.ids], dim=-1).tolist()


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Tensors' values, as one hash."""
    return hashlib.sha1(b"".join(t.contiguous().cpu().numpy().tobytes() for t in tensors)).hexdigest()


def input_digest(inputs: dict) -> str:
    """What the LLM is handed (ids, mask, embeddings), as one hash."""
    return tensor_digest(*(inputs[k] for k in sorted(inputs)))


def plan_digest(plan: PlannedPrompt) -> str:
    """A planned prompt's ids and kept tokens (values and places), as one hash: equal plans give the LLM equal
    inputs."""
    return tensor_digest(plan.input_ids, plan.kept.tokens, plan.kept.positions)


def shared_scores(model, inputs: dict, answer: AnswerTokens, memo: dict) -> tuple[list[float], float]:
    """``option_scores``, computed once per distinct LLM input of a question: at the full budget most reducers
    keep every token and hand the LLM the same embeddings. -> (scores, seconds the forward took when first run,
    0 if run now), so that a method's seconds still charge its own forward."""
    key = ("scores", input_digest(inputs), tuple(answer.ids), tuple(answer.lead))
    return remembered(memo, key, lambda: option_scores(model, inputs, answer))


def question_row(cell: Cell, record: dict, scores: list[float], visual: int, seconds: float, timing: str) -> dict:
    """The per-question row of the cache: prediction (an option's text), visual tokens (asserted <= B), seconds."""
    if visual > cell.budget:
        raise AssertionError(f"{cell.method} spent {visual} visual tokens on {record['id']}, budget {cell.budget}")
    options = record["options"]
    best = max(range(len(options)), key=scores.__getitem__)
    return {"id": record["id"], "skill": record["skill"], "temporal": bool(record["temporal"]),
            "answer": options[record["answer_index"]], "predicted": options[best], "n_options": len(options),
            "visual_tokens": visual, "scores": [round(s, 4) for s in scores], "seconds": round(seconds, 4),
            "timing": timing}


@torch.inference_mode()
def score_one(model, processor, cell: Cell, pipeline, clips: dict, record: dict, answer: AnswerTokens) -> dict:
    """One cell's row, timed alone. ``clips`` holds this question's decoded clips by frame count (and its
    pipelines' memo); ``seconds`` is what the method costs alone: its own decode, encoding, relevance and forward
    even when another method of the question computed them first."""
    start = time.perf_counter()
    prompt = record["conversations"][0]["value"]
    clip, reused = clips[cell.decoded_frames]
    if pipeline is None:
        (scores,), (visual,) = score_questions(model, processor, [prompt], [clip], [answer])
    else:
        inputs, info = pipeline.prepare(model, processor, clip, prompt, query=record["question"], memo=clips["memo"])
        scores, forward = shared_scores(model, inputs, answer, clips["memo"])
        visual, reused = int(info["visual_tokens"]), reused + info["reused_seconds"] + forward
    return question_row(cell, record, scores, visual, time.perf_counter() - start + reused, TIMING)


@torch.inference_mode()
def score_batched(model, processor, cells: list[Cell], pipelines: dict, clips: dict, record: dict,
                  answer: AnswerTokens) -> list[dict]:
    """Every cell's row of one question, batched: each reducer's prompt is planned first; the distinct ones (at the
    full budget most reducers plan the same) are bridged in one pass over the embedding table (``finish``) and
    those of one length go through one forward (no padding: the same computation as alone up to the order of
    float sums; 1.3-1.4x the throughput of one at a time on one thread). A row's seconds are its planning plus
    its share of the bridge and the batch (timing ``batched``); the table's seconds come from rows timed alone
    (``--alone``) when there are any."""
    prompt, rows = record["conversations"][0]["value"], {}
    planned = []  # (cell, digest, plan, seconds so far)
    for cell in cells:
        if pipelines[cell] is None:  # the processor's own path
            rows[cell] = score_one(model, processor, cell, None, clips, record, answer)
            continue
        start = time.perf_counter()
        clip, reused = clips[cell.decoded_frames]
        plan = pipelines[cell].plan(model, processor, clip, prompt, query=record["question"], memo=clips["memo"])
        seconds = time.perf_counter() - start + reused + plan.info["reused_seconds"]
        planned.append((cell, plan_digest(plan), plan, seconds))
    unique: dict[str, PlannedPrompt] = {}  # what reaches the bridge and the LLM, once per distinct prompt
    for _, digest, plan, _ in planned:
        unique.setdefault(digest, plan)
    start = time.perf_counter()
    finished = dict(zip(unique, finish(model, processor, list(unique.values()))))  # one bridge pass for all
    bridge_share = (time.perf_counter() - start) / max(len(unique), 1)
    scored: dict[str, tuple[list[float], float]] = {}  # digest -> (scores, seconds of its share of the batch)
    by_length: dict[int, list[str]] = {}
    for digest, plan in unique.items():
        by_length.setdefault(len(plan.input_ids), []).append(digest)
    for digests in by_length.values():
        start = time.perf_counter()
        inputs = [with_lead(dict(finished[d][0]), answer.lead, model) for d in digests]
        batch = {k: torch.cat([i[k] for i in inputs]) for k in ("input_ids", "attention_mask", "inputs_embeds")}
        logits = model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()  # (n, V)
        share = (time.perf_counter() - start) / len(digests)
        for d, row in zip(digests, logits):
            scored[d] = torch.log_softmax(row[answer.ids], dim=-1).tolist(), share
    for cell, digest, plan, seconds in planned:
        scores, share = scored[digest]
        rows[cell] = question_row(cell, record, scores, plan.info["visual_tokens"], seconds + bridge_share + share,
                                  "batched")
    return [rows[cell] for cell in cells]


def decoded(video: Path, cells: list[Cell]) -> dict:
    """One question's clips, decoded once per frame count: {frames: (clip, decode seconds)}, and an empty memo."""
    clips: dict = {"memo": {}}
    for frames in sorted({c.decoded_frames for c in cells}):
        start = time.perf_counter()
        clip = load_video(video, num_frames=frames)
        clips[frames] = clip, time.perf_counter() - start
    return clips


def cache_dir(model_dir: Path, data: Path, root: Path) -> Path:
    """runs/budget/<model>-<hash of the model weights' and the data's identity>: another model, or regenerated
    data, never reads these results."""

    def identity(path: Path) -> str:
        stat = path.stat() if path.is_file() else None
        return f"{path.resolve()}:{stat and (stat.st_size, stat.st_mtime_ns)}"

    key = f"v{CACHE_VERSION}|{identity(model_dir / 'model.safetensors')}|{identity(data / 'test.jsonl')}"
    return root / f"{model_dir.resolve().name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


class CellLog:
    """One (method, budget)'s rows, append-only: CACHE/<method>-<b>/rows.jsonl, a header line (the spec) then one
    row a question, each flushed and fsynced as it is scored; the run holds CACHE/<method>-<b>/.lock, so a second
    run on the same cell stops with one line. A torn last line (a killed run) is cut off on open; the rows of an
    older one-file cache (<method>-<b>.json) are carried over once."""

    def __init__(self, cache: Path, cell: Cell) -> None:
        self.cell, self.folder = cell, cache / f"{cell.method}-{cell.per_frame}"
        self.path = self.folder / "rows.jsonl"
        self.header = {"spec": cell.spec, "decoded_frames": cell.decoded_frames, "version": CACHE_VERSION}
        self.rows: dict[str, dict] = {}

    def open(self) -> CellLog:
        """Read what is done (call while holding the lock)."""
        if not self.path.is_file():
            self._start(self._legacy())
        with self.path.open("rb") as f:
            lines = f.read().split(b"\n")
        good = 0  # bytes of whole, parseable lines
        for i, line in enumerate(lines[:-1]):  # the part after the last newline is torn (or empty)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if i == 0 and record != self.header:
                raise CellMismatch(f"{self.path} was made with {record}, now {self.header}: move it away to redo "
                                   "this cell")
            if i:
                self.rows[record["id"]] = record
            good += len(line) + 1
        if good < self.path.stat().st_size:
            os.truncate(self.path, good)
        return self

    def append(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows[row["id"]] = row

    def _legacy(self) -> list[dict]:
        old = self.folder.parent / f"{self.cell.method}-{self.cell.per_frame}.json"
        if not old.is_file():
            return []
        saved = json.loads(old.read_text())
        same = saved.get("spec") == self.cell.spec and saved.get("decoded_frames") == self.cell.decoded_frames
        return list(saved["rows"].values()) if same else []

    def _start(self, rows: list[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in [self.header, *rows])
        write_text_atomic(self.path, text)


class CellMismatch(ValueError):
    """A cell's rows were made with another spec."""


def run_cells(asker, data: Path, records: list[dict], cells: list[Cell], cache: Path,
              alone: bool = False) -> dict[Cell, list[dict]]:
    """Every cell's rows for ``records``, computing only those missing from the cache (holding every cell's lock)."""
    from tempflex.budget import BudgetPipeline

    answers: dict[tuple[str, ...], AnswerTokens] = {}  # one tokenisation per distinct option list
    for r in records:
        if tuple(r["options"]) not in answers:
            answers[tuple(r["options"])] = answer_tokens(asker.processor, r["options"])
    asker.model.eval()
    logs = {cell: CellLog(cache, cell) for cell in cells}
    with ExitStack() as held:
        for log in logs.values():
            held.enter_context(exclusive_output(log.folder, "budget_probes run on this cell"))
            log.open()
        todo = [(r, [c for c in cells if r["id"] not in logs[c].rows]) for r in records]
        todo = [(r, missing) for r, missing in todo if missing]
        pipelines = {c: None if c.spec is None else BudgetPipeline.from_spec(c.spec) for c in cells}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns) as progress:  # question by question, so that every cell has the same ones done
            task = progress.add_task(f"questions ({len(cells)} cells)", total=len(todo))
            for record, missing in todo:
                clips = decoded(data / record["video"], missing)
                answer = answers[tuple(record["options"])]
                if alone:
                    rows = [score_one(asker.model, asker.processor, c, pipelines[c], clips, record, answer)
                            for c in missing]
                else:
                    rows = score_batched(asker.model, asker.processor, missing, pipelines, clips, record, answer)
                for cell, row in zip(missing, rows):
                    logs[cell].append(row)
                progress.advance(task)
    return {cell: [logs[cell].rows[r["id"]] for r in records] for cell in cells}


def summary(cell: Cell, rows: list[dict]) -> dict:
    names = {f.name for f in fields(Prediction)}
    report: EvalReport = summarise([Prediction(**{k: v for k, v in r.items() if k in names}) for r in rows],
                                   model="", data="", split="test", frames=cell.decoded_frames)
    out = {"method": cell.method, "per_frame": cell.per_frame, "budget": cell.budget, "spec": cell.spec,
           "frames": cell.decoded_frames, "questions": len(rows)}
    visual = [r["visual_tokens"] for r in rows]
    out["visual_mean"], out["visual_max"] = sum(visual) / len(visual), max(visual)
    out["visual_per_frame"] = out["visual_mean"] / cell.frames  # per frame of the 16-frame clip
    timed = [r["seconds"] for r in rows if r.get("timing") == TIMING] or [r["seconds"] for r in rows]
    out["seconds_mean"], out["seconds_n"] = sum(timed) / len(timed), len(timed)  # rows timed by this code
    for kind, temporal in (("temporal", True), ("static", False)):
        chosen = [r for r in rows if r["temporal"] == temporal]
        correct = sum(r["answer"] == r["predicted"] for r in chosen)
        out[f"{kind}_accuracy"] = getattr(report, f"{kind}_accuracy") if chosen else math.nan  # mean over skills
        out[f"{kind}_ci"] = wilson(correct, len(chosen)) if chosen else (math.nan, math.nan)  # pooled questions
        out[f"{kind}_chance"] = getattr(report, f"{kind}_chance")
    out["skills"] = {s.skill: {"accuracy": s.accuracy, "n": s.n, "temporal": s.temporal, "chance": s.chance}
                     for s in report.skills}
    return out


def versus(rows: list[dict], base: list[dict] | None) -> dict | None:
    """Temporal questions that only this method gets right against those only ``base`` (uniform frames at the same
    b) gets right, and the sign test's p: the paired comparison, which the two pooled intervals understate."""
    if base is None:
        return None
    other = {r["id"]: r["answer"] == r["predicted"] for r in base}
    mine = [(r["answer"] == r["predicted"], other[r["id"]]) for r in rows if r["temporal"]]
    wins, losses = sum(a and not b for a, b in mine), sum(b and not a for a, b in mine)
    return {"wins": wins, "losses": losses, "p": sign_test(wins, losses)}


def _versus(result: dict) -> str:
    v = result.get("versus")
    return "-" if v is None else f"{v['wins']} / {v['losses']} ({v['p']:.2g})"


def shown(path: Path) -> str:
    """A path as the docs show it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _acc(result: dict, kind: str) -> str:
    if math.isnan(result[f"{kind}_accuracy"]):
        return "n/a"
    low, high = result[f"{kind}_ci"]
    return f"{result[f'{kind}_accuracy']:.3f} [{low:.2f}, {high:.2f}]"


def markdown(results: list[dict], command: str, meta: dict) -> str:
    skills = list(results[0]["skills"])
    lines = [
        "## Accuracy against visual tokens per frame (`benchmarks/budget_probes.py`)",
        "",
        "```",
        command,
        "```",
        "",
        (f"Model `{meta['model']}`, data `{meta['data']}` (first {meta['questions']} test questions, "
         f"{meta['questions'] // 10} a skill), "
        f"{meta['frames']} frames of 4 tokens (64 tokens) at full budget; torch threads {meta['threads']}. "
        "Accuracy: mean over skills (temporal / static), 95 % Wilson interval of the pooled questions in brackets. "
        "Visual tokens: per question, mean and max (max <= B is asserted). `uniform-frames` decodes B/4 frames; "
        "the reducers decode 16 and keep B tokens (`drop` may keep fewer). "
        f"Chance: temporal {results[0]['temporal_chance']:.2f}, static {results[0]['static_chance']:.2f}."),
        "",
        ("| method | tokens/frame b | budget B | visual tokens mean / max | temporal acc | static acc "
         "| temporal vs uniform-frames: only it / only u-f right (p) | s/question (n timed) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['per_frame']} | {r['budget']} | {r['visual_mean']:.1f} / {r['visual_max']} | "
            f"{_acc(r, 'temporal')} | {_acc(r, 'static')} | {_versus(r)} | {r['seconds_mean']:.3f} ({r['seconds_n']}) |")
    lines += ["", "Accuracy per skill:", "",
              "| method | b | " + " | ".join(skills) + " |", "|---|---|" + "---|" * len(skills)]
    for r in results:
        accs = " | ".join(f"{r['skills'][s]['accuracy']:.2f}" for s in skills)
        lines.append(f"| {r['method']} | {r['per_frame']} | {accs} |")
    specs = sorted({(r["method"], (METHODS[r["method"]] or "load_video(num_frames=B // 4)")) for r in results})
    lines += ["", "Specs: " + "; ".join(f"`{m}`: `{s}`" for m, s in specs) + "."]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("temporal", "static")):
        for i, method in enumerate(METHODS):  # markers shrink so that coinciding lines stay visible
            mine = sorted((r for r in results if r["method"] == method), key=lambda r: r["per_frame"])
            if mine:
                ax.plot([r["visual_per_frame"] for r in mine], [r[f"{kind}_accuracy"] for r in mine],
                        marker="osD^vP"[i % 6], markersize=11 - 1.5 * (i % 6), linewidth=2.5 - 0.3 * (i % 6),
                        linestyle="-" if i < 6 else "--", alpha=0.8,
                        label=method)
        ax.axhline(results[0][f"{kind}_chance"], color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xlabel("visual tokens per frame (mean spent, 16-frame clip)")
        ax.set_title(f"{kind} skills (mean accuracy)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    from tempflex.ask import DEFAULT_MODEL, Asker

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a saved TempFlex model dir")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/probes-seed1", help="a probe set with test.jsonl")
    parser.add_argument("--limit", type=int, default=None,
                        help="first N test questions (10 skills in turn); default: all")
    parser.add_argument("--budgets", default="1,2,4", help="visual tokens per frame, 1..4 (4: every token)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--frames", type=int, default=16, help="frames of the full clip")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/budget_probes",
                        help="writes OUT.json and OUT.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/budget_probes.png")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs/budget")
    parser.add_argument("--alone", action="store_true",
                        help="score each method in its own forward, so that its seconds are what it costs alone "
                             "(default: the methods' forwards of a question batched, for accuracy)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 was 2-3x faster than 2 while another job kept the 2 cores busy")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    per_frame = [int(b) for b in args.budgets.split(",")]
    if unknown or not methods:
        parser.error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if any(not 1 <= b <= TOKENS_PER_FRAME for b in per_frame):
        parser.error(f"--budgets are tokens per frame in 1..{TOKENS_PER_FRAME}, got {args.budgets}")
    command = ".venv/bin/python benchmarks/budget_probes.py " + shlex.join(sys.argv[1:])
    records = read_split(args.data, "test", args.limit)
    asker = Asker(args.model, threads=args.threads)
    cells = [Cell(m, b, args.frames) for m in methods for b in per_frame]
    cache = cache_dir(asker.model_dir, args.data, args.cache)
    try:
        rows = run_cells(asker, args.data, records, cells, cache, alone=args.alone)
    except (OutputLocked, CellMismatch) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    results = [summary(cell, rows[cell]) for cell in cells]
    for cell, result in zip(cells, results):  # paired with uniform frames at the same b, when that was run
        base = Cell("uniform-frames", cell.per_frame, cell.frames)
        result["versus"] = versus(rows[cell], rows.get(base) if cell != base else None)
    meta = {"model": shown(args.model), "data": shown(args.data), "questions": len(records), "frames": args.frames,
            "threads": torch.get_num_threads(), "cache": str(cache), "command": command}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    text = markdown(results, command, meta)
    write_text_atomic(args.out.with_suffix(".md"), text)
    plot(results, args.plot)
    print(text)


if __name__ == "__main__":
    main()
