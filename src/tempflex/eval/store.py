"""A run's folder: ``run.json`` (its settings), ``predictions.jsonl`` (append-only), ``report.json``, a plot.

Each batch's predictions are appended and fsynced before the next batch starts, so a killed run loses at most the
batch it was in; a torn last line (a kill mid-write) is cut off when the run resumes. A rerun with the same settings
skips the questions already answered; with other settings it stops with a one-line error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tempflex.atomic import fsync_dir, write_text_atomic
from tempflex.eval.report import Prediction

FIELDS = ("question_id", "prediction", "extracted", "answer", "correct", "matched", "visual_tokens")


class PredictionStore:
    def __init__(self, out: Path, settings: dict) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"--out {self.out} is a file, not a folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "predictions.jsonl"
        header = self.out / "run.json"
        if header.is_file():
            before = json.loads(header.read_text())
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            if changed:
                raise ValueError(f"{self.out} holds a run with other settings ({', '.join(changed)} differ): "
                                 "pass another --out, or the same settings to resume it")
        else:
            write_text_atomic(header, json.dumps(settings, indent=2) + "\n")
        self._cut_torn_line()

    def _cut_torn_line(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())

    def done(self) -> dict[str, Prediction]:
        """The predictions written so far, by question id."""
        if not self.path.is_file():
            return {}
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return {r["question_id"]: Prediction(**{k: r[k] for k in FIELDS}) for r in rows}

    def append(self, predictions: list[Prediction]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in predictions)
            handle.flush()
            os.fsync(handle.fileno())
        if new:
            fsync_dir(self.out)
