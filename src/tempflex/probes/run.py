"""A saved model on a probe set, as ``tempflex probes eval`` and ``tempflex budget optimize`` run it.

``evaluate_saved_model(data)`` loads the model (default: tempflex-tiny), scores one split with
``tempflex.probes.evaluate.evaluate`` and writes ``report.json``, ``predictions.jsonl`` and ``accuracy.png``.
``optimize_saved_model(model, data, budget, ...)`` runs FluxViT's Token Optimization over the probe split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tempflex.atomic import write_jsonl_atomic, write_text_atomic
from tempflex.probes.evaluate import EvalReport, Prediction, evaluate, plot_report, probe_scorer, read_split

if TYPE_CHECKING:
    from tempflex.budget.optimize import SearchResult


@dataclass
class ProbeEvalRun:
    report: EvalReport
    predictions: list[Prediction]
    paths: dict[str, Path]  # written files by kind: report, predictions, plot


def evaluate_saved_model(
    data: str | os.PathLike,
    model: str | os.PathLike | None = None,
    *,
    split: str = "test",
    frames: int | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    out: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeEvalRun:
    """Accuracy per skill of the saved model ``model`` (None: the default model) on ``data/split.jsonl``; files go to ``out``
    (default ``data/eval-split``). ``frames`` defaults to the model's; ``progress(done, total)`` counts questions.

    A missing or empty split fails before the model loads.
    """
    from tempflex.ask import Asker

    if batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"batch_size and limit must be >= 1, got {batch_size} and {limit}")
    total = len(read_split(Path(data), split, limit))
    asker = Asker(model)
    frames = asker.default_frames if frames is None else frames
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    done = 0

    def advance(questions: int) -> None:
        nonlocal done
        done += questions
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    report, predictions = evaluate(
        asker.model,
        asker.processor,
        data,
        split=split,
        frames=frames,
        batch_size=batch_size,
        limit=limit,
        progress=advance,
    )
    report.model = str(asker.model_dir)
    folder = Path(out) if out is not None else Path(data) / f"eval-{split}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"report": folder / "report.json", "predictions": folder / "predictions.jsonl"}
    write_text_atomic(paths["report"], json.dumps(report.to_json(), indent=2) + "\n")
    write_jsonl_atomic(paths["predictions"], (vars(p) for p in predictions))
    paths["plot"] = plot_report(report, folder / "accuracy.png")
    return ProbeEvalRun(report, predictions, paths)


def optimize_saved_model(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    budget: int,
    frames_options: Sequence[int],
    tokens_per_frame_options: Sequence[int],
    *,
    split: str = "val",
    limit: int | None = None,
    batch_size: int = 8,
    patience: int = 1,
) -> SearchResult:
    """FluxViT's Token Optimization (``tempflex.budget.optimize.token_optimization``) of the saved model ``model`` (None: tempflex-tiny)
    on ``data/split.jsonl``: the best frames x tokens-per-frame split of ``budget`` visual tokens.

    A search space with no split under the budget fails before the model loads.
    """
    from tempflex.ask import Asker
    from tempflex.budget.optimize import check_space, token_optimization

    check_space(budget, frames_options, tokens_per_frame_options)
    asker = Asker(model)
    score = probe_scorer(asker.model, asker.processor, data, split=split, limit=limit, batch_size=batch_size)
    return token_optimization(score, budget, frames_options, tokens_per_frame_options, patience=patience)
