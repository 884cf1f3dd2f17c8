"""Aggregate judged predictions the way each benchmark does: overall, per category / duration, with 95 % intervals."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tempflex.eval.base import Benchmark, Question
from tempflex.eval.stats import accuracy_bars, wilson


@dataclass
class Prediction:
    question_id: str
    prediction: str  # the model's raw output: the chosen label (option scoring) or the generated text
    extracted: str  # what the benchmark's rule read from it
    answer: str
    correct: bool
    matched: bool  # the rule could read the output
    visual_tokens: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Score:
    name: str
    n: int
    correct: int
    accuracy: float
    ci_low: float  # Wilson 95 %
    ci_high: float


def score(name: str, predictions: list[Prediction]) -> Score:
    right = sum(p.correct for p in predictions)
    low, high = wilson(right, len(predictions))
    return Score(name, len(predictions), right, right / len(predictions) if predictions else 0.0, low, high)


@dataclass
class Report:
    benchmark: str
    title: str
    questions: int  # scored (after MVBench-style removal of empty answers)
    overall: Score
    headline: float  # the benchmark's own headline: the accuracy, or the mean over ``headline_group``
    headline_group: str | None
    groups: dict[str, list[Score]] = field(default_factory=dict)
    unmatched: int = 0  # outputs the rule could not read
    skipped_empty: int = 0
    settings: dict = field(default_factory=dict)  # model, data, frames, scoring, budget
    seconds: float = 0.0  # wall time of the run (of its last resumption)
    questions_per_second: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def aggregate(bench: Benchmark, questions: list[Question], predictions: list[Prediction], **settings) -> Report:
    """The report of ``predictions`` (one per question of ``questions``, any order)."""
    by_id = {q.id: q for q in questions}
    empty = [p for p in predictions if bench.skip_empty and not p.prediction.strip()]
    kept = [p for p in predictions if p not in empty]
    groups: dict[str, list[Score]] = {}
    for key in bench.groups:
        members: dict[str, list[Prediction]] = defaultdict(list)
        for p in kept:
            members[by_id[p.question_id].groups.get(key, "")].append(p)
        groups[key] = [score(value, members[value]) for value in members]  # in order of first appearance
    overall = score("overall", kept)
    headline = overall.accuracy
    if bench.headline is not None and groups.get(bench.headline):
        values = groups[bench.headline]
        headline = sum(s.accuracy for s in values) / len(values)
    return Report(bench.name, bench.title, len(kept), overall, headline, bench.headline, groups,
                  sum(not p.matched for p in kept), len(empty), settings)


def plot(report: Report, path: Path) -> Path:
    """Overall accuracy and each value of the first aggregation key, with their 95 % intervals."""
    scores = [report.overall]
    if report.groups:
        scores += next(iter(report.groups.values()))
    model = Path(str(report.settings.get("model") or "model")).name
    return accuracy_bars(path, [s.name for s in scores], [s.accuracy for s in scores], [s.ci_low for s in scores],
                         [s.ci_high for s in scores], colours=["tab:gray"] + ["tab:blue"] * (len(scores) - 1),
                         title=f"{model} on {report.title} ({report.questions} questions)")


def table_rows(report: Report) -> list[tuple[str, str, int, float, float, float]]:
    """(key, value, n, accuracy, low, high) rows for a printed table: overall first, then every group."""
    o = report.overall
    rows = [("overall", "", o.n, o.accuracy, o.ci_low, o.ci_high)]
    for key, scores in report.groups.items():
        rows += [(key, s.name, s.n, s.accuracy, s.ci_low, s.ci_high) for s in scores]
    return rows
