"""``run_eval``: score a model on a benchmark from its local files; resumable, batched, decoding ahead.

The questions not yet in ``OUT/predictions.jsonl`` are answered in batches; while the model answers one batch, a
background thread decodes the next batch's videos. Each batch's predictions are judged by the benchmark's rule and
appended (fsynced) before the next; at the end ``report.json`` (atomic) and ``accuracy.png`` are written from all
of them. ``progress(done, total)`` is called after each batch (the CLI draws a bar with an ETA from it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tempflex.atomic import write_text_atomic
from tempflex.eval.base import Benchmark, Question
from tempflex.eval.registry import get_benchmark
from tempflex.eval.report import Prediction, Report, aggregate, plot
from tempflex.eval.responder import SCORING, Responder
from tempflex.eval.store import PredictionStore


@dataclass
class EvalConfig:
    benchmark: str  # a registered name (`tempflex eval --list`)
    data: Path  # the benchmark's folder, in its published layout
    videos: Path | None = None  # where the videos are, when not in their usual place under ``data``
    out: Path | None = None  # the run's folder (default: DATA/eval-BENCHMARK)
    limit: int | None = None  # only the first N questions
    batch_size: int = 4  # questions per forward pass
    scoring: str = "options"  # options | text | generate (tempflex.eval.responder)
    plot: bool = True

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.scoring not in SCORING:
            raise ValueError(f"scoring must be one of {', '.join(SCORING)}, got {self.scoring!r}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else self.data / f"eval-{self.benchmark}"


def load_questions(config: EvalConfig) -> tuple[Benchmark, list[Question]]:
    bench = get_benchmark(config.benchmark)
    questions = bench.load(config.data, config.videos)
    return bench, questions[: config.limit] if config.limit else questions


def run_eval(config: EvalConfig, responder: Responder, settings: dict | None = None,
             progress: Callable[[int, int], None] | None = None) -> Report:
    """Answer and judge every question of the benchmark not answered yet; return the report of all of them.

    ``settings``: what identifies the run besides the benchmark and data (model, frames, budget...): a resumed run
    must have the same."""
    bench, questions = load_questions(config)
    meta = {"benchmark": bench.name, "data": str(config.data.resolve()), "model": responder.name,
            "scoring": config.scoring, **(settings or {})}
    store = PredictionStore(config.out_dir, meta)
    done = store.done()
    todo = [q for q in questions if q.id not in done]
    start = time.perf_counter()
    if progress:
        progress(len(questions) - len(todo), len(questions))
    batches = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        ahead: Future | None = pool.submit(_decode, responder, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            media = ahead.result()
            ahead = pool.submit(_decode, responder, batches[index + 1]) if index + 1 < len(batches) else None
            outputs = responder.respond(batch, media)
            judged = [_judge(bench, q, o.text, o.visual_tokens) for q, o in zip(batch, outputs)]
            store.append(judged)
            done.update((p.question_id, p) for p in judged)
            if progress:
                progress(len(questions) - len(todo) + sum(len(b) for b in batches[: index + 1]), len(questions))
    seconds = time.perf_counter() - start
    report = aggregate(bench, questions, [done[q.id] for q in questions], **meta)
    report.seconds = seconds
    report.questions_per_second = len(todo) / seconds if todo and seconds > 0 else 0.0
    write_text_atomic(config.out_dir / "report.json", json.dumps(report.to_json(), indent=2) + "\n")
    if config.plot:
        plot(report, config.out_dir / "accuracy.png")
    return report


def _decode(responder: Responder, batch: list[Question]) -> list[object]:
    media = []
    for q in batch:
        try:
            media.append(responder.decode(q))
        except ValueError as exc:  # VideoDecodeError: name the question too
            raise ValueError(f"question {q.id}: {exc}") from None
    return media


def _judge(bench: Benchmark, question: Question, output: str, visual_tokens: int) -> Prediction:
    verdict = bench.judge(question, output)
    return Prediction(question.id, output, verdict.extracted, question.answer, bool(verdict.correct),
                      bool(verdict.matched), int(visual_tokens))
