"""Multiple-choice evaluation of a TempFlex model on a probes split: accuracy per skill with confidence intervals.

Scoring: one forward pass per question; the answer is the option whose first answer token the model rates highest
at the answer position (the answers are the options' text, see ``tempflex.probes.format``), so a model cannot lose
points on formatting. Options are tokenised through the processor's own chat template: an option's token is the
first token after the generation prompt in the rendered ``user, assistant=option`` conversation (after any tokens
all the options share, which are appended to the prompt).

Shapes: B questions in a batch, K options, V vocabulary.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from tempflex.answers import AnswerTokens, answer_tokens, with_lead
from tempflex.eval.stats import accuracy_bars, wilson
from tempflex.video import load_video


@dataclass
class Prediction:
    id: str
    skill: str
    temporal: bool
    answer: str  # the right option
    predicted: str  # the model's option
    n_options: int
    visual_tokens: int
    scores: list[float]  # log-probabilities of the offered options (softmax over their first tokens)

    @property
    def correct(self) -> bool:
        return self.answer == self.predicted


@dataclass
class SkillScore:
    skill: str
    temporal: bool
    n: int
    correct: int
    accuracy: float
    ci_low: float  # Wilson score interval, 95 %
    ci_high: float
    chance: float  # mean of 1 / options
    visual_tokens: float  # per question, mean


@dataclass
class EvalReport:
    model: str
    data: str
    split: str
    frames: int
    skills: list[SkillScore] = field(default_factory=list)
    temporal_accuracy: float = 0.0  # mean over temporal skills
    static_accuracy: float = 0.0  # mean over static controls
    temporal_chance: float = 0.0
    static_chance: float = 0.0
    questions: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def read_split(data: Path, split: str, limit: int | None = None) -> list[dict]:
    path = Path(data) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: generate the probes with `tempflex probes generate`")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path} has no questions")
    return records[:limit] if limit else records


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.inference_mode()
def score_questions(model, processor, prompts: list[str], videos: list,
                    answers: list[AnswerTokens]) -> tuple[list[list[float]], list[int]]:
    """Per question the log-softmax over its options' tokens, and its visual token count. Questions whose options
    share lead tokens must come one per call (the lead is appended to the prompt)."""
    if len({tuple(a.lead) for a in answers}) > 1:
        raise ValueError("score questions with different lead tokens in separate calls")
    texts = [processor.apply_chat_template([{"role": "user", "content": p}]) for p in prompts]
    inputs = with_lead(processor(texts, videos=videos), answers[0].lead, model)
    mask = inputs["attention_mask"]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions as in training
    out = model(**inputs, position_ids=position_ids, use_cache=False, logits_to_keep=1)
    logits = out.logits[:, -1].float()  # (B, V)
    visual = (inputs["input_ids"] == processor.video_token_id).sum(-1).tolist()
    scores = [torch.log_softmax(logits[row, a.ids], dim=-1).tolist() for row, a in enumerate(answers)]
    return scores, visual


def _runs(records: list[dict], answers: list[AnswerTokens], size: int) -> Iterator[list[int]]:
    """Batches of record indices: up to ``size`` questions whose options need no lead, the others alone."""
    batch: list[int] = []
    for i, answer in enumerate(answers):
        if answer.lead:
            yield [i]
            continue
        batch.append(i)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def evaluate(model, processor, data: str | Path, *, split: str = "test", frames: int = 16, batch_size: int = 8,
             limit: int | None = None, progress=None) -> tuple[EvalReport, list[Prediction]]:
    """Score every question of ``data/split.jsonl``; returns the report and the per-question predictions."""
    import time

    data = Path(data)
    records = read_split(data, split, limit)
    cache: dict[tuple[str, ...], AnswerTokens] = {}
    for r in records:  # one tokenisation per distinct option list
        if tuple(r["options"]) not in cache:
            cache[tuple(r["options"])] = answer_tokens(processor, r["options"])
    answers = [cache[tuple(r["options"])] for r in records]
    model.eval()
    start = time.perf_counter()
    predictions: dict[int, Prediction] = {}
    for run in _runs(records, answers, batch_size):
        batch = [records[i] for i in run]
        prompts = [r["conversations"][0]["value"] for r in batch]
        videos = [load_video(data / r["video"], num_frames=frames) for r in batch]
        scores, visual = score_questions(model, processor, prompts, videos, [answers[i] for i in run])
        for i, r, s, v in zip(run, batch, scores, visual):
            best = max(range(len(s)), key=s.__getitem__)
            predictions[i] = Prediction(r["id"], r["skill"], bool(r["temporal"]), r["answer"], r["options"][best],
                                        len(s), v, s)
        if progress is not None:
            progress(len(batch))
    ordered = [predictions[i] for i in range(len(records))]
    report = summarise(ordered, model=str(getattr(model, "name_or_path", "")), data=str(data), split=split,
                       frames=frames)
    report.seconds = time.perf_counter() - start
    return report, ordered


def summarise(predictions: list[Prediction], **meta) -> EvalReport:
    by_skill: dict[str, list[Prediction]] = defaultdict(list)
    for p in predictions:
        by_skill[p.skill].append(p)
    report = EvalReport(**meta, questions=len(predictions))
    for skill, preds in by_skill.items():
        correct = sum(p.correct for p in preds)
        low, high = wilson(correct, len(preds))
        report.skills.append(SkillScore(
            skill, preds[0].temporal, len(preds), correct, correct / len(preds), low, high,
            sum(1 / p.n_options for p in preds) / len(preds), sum(p.visual_tokens for p in preds) / len(preds)))
    report.skills.sort(key=lambda s: (not s.temporal, s.skill))
    for kind, temporal in (("temporal", True), ("static", False)):
        chosen = [s for s in report.skills if s.temporal == temporal]
        if chosen:
            setattr(report, f"{kind}_accuracy", sum(s.accuracy for s in chosen) / len(chosen))
            setattr(report, f"{kind}_chance", sum(s.chance for s in chosen) / len(chosen))
    return report


def plot_report(report: EvalReport, path: Path, title: str | None = None) -> Path:
    """Bar chart: accuracy per skill with its 95 % interval, chance marked (temporal skills blue, controls grey)."""
    skills = report.skills
    return accuracy_bars(
        path, [s.skill for s in skills], [s.accuracy for s in skills], [s.ci_low for s in skills],
        [s.ci_high for s in skills], chance=[s.chance for s in skills],
        colours=["tab:blue" if s.temporal else "tab:gray" for s in skills],
        title=title or f"{Path(report.model).name or 'model'} on {report.split} ({report.frames} frames)",
        ylabel="accuracy (95 % CI); red: chance")


def probe_scorer(model, processor, data_dir: str | Path, split: str = "val", limit: int | None = None,
                 batch_size: int = 8) -> Callable[[int, int], float]:
    """``score(frames, tokens_per_frame)``: the model's accuracy on ``data_dir/split.jsonl`` (a probe set) with
    ``frames`` frames per video and at most ``tokens_per_frame`` merged tokens per frame."""
    from tempflex.processing import TempFlexProcessor

    read_split(Path(data_dir), split, limit)  # a missing or empty split fails now, not at the first trial

    def score(frames: int, tokens_per_frame: int) -> float:
        settings = replace(processor.settings, video_max_tokens_per_frame=tokens_per_frame,
                           video_min_tokens_per_frame=min(tokens_per_frame, processor.settings.video_min_tokens_per_frame))
        sized = TempFlexProcessor(processor.tokenizer, settings)
        _, predictions = evaluate(model, sized, data_dir, split=split, frames=frames, batch_size=batch_size,
                                  limit=limit)
        return sum(p.correct for p in predictions) / len(predictions)

    return score
