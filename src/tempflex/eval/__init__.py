"""Scoring models on the paper's video benchmarks from their published files (``tempflex eval``; docs/eval.md).

``get_benchmark(name)`` / ``available()``: the registry (Video-MME with and without subtitles, MVBench,
TempCompass's three formats, MLVU dev, LongVideoBench val, NExT-QA multiple choice, the EgoSchema subset);
``run_eval(EvalConfig(...), responder)``: a resumable run writing report.json, predictions.jsonl and a plot;
``TempFlexResponder``: a loaded TempFlex model as the responder. Nothing heavy is imported here.
"""

from tempflex.eval.base import Benchmark, Question, Verdict
from tempflex.eval.registry import available, get_benchmark, register
from tempflex.eval.report import Prediction, Report
from tempflex.eval.responder import ResponderSettings, TempFlexResponder
from tempflex.eval.runner import EvalConfig, load_questions, run_eval

__all__ = [
    "Benchmark",
    "EvalConfig",
    "Prediction",
    "Question",
    "Report",
    "ResponderSettings",
    "TempFlexResponder",
    "Verdict",
    "available",
    "get_benchmark",
    "load_questions",
    "register",
    "run_eval",
]
