"""The lmms-eval model ``tempflex``, run by lmms-eval itself in its own virtual environment (.ci/lmms_env.sh).

End to end: `tempflex eval export-lmms` writes a local generate_until task for a few probes, `python -m lmms_eval
--model tempflex` scores it (found through the `lmms_eval.models` entry point), and its accuracy and answers equal
`tempflex eval` on the same questions. lmms-eval 0.7.3 exits 0 even when a run fails unless --verbosity DEBUG, so
the results JSON is read, not the exit code alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tempflex.ask import Asker
from tempflex.eval import EvalConfig, ResponderSettings, TempFlexResponder, run_eval
from tempflex.integrations.lmms_eval.task import export_task

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lmms_python() -> str:
    """The lmms-eval environment's python (built once and cached under ~/.cache/tempflex/)."""
    done = subprocess.run(["bash", str(ROOT / ".ci" / "lmms_env.sh")], capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
            "PYTHONPATH": ""}


def test_lmms_eval_scores_like_tempflex_eval(lmms_python, saved_tiny, probes, tmp_path):
    written = export_task("probes", probes, tmp_path / "task", limit=6)
    assert written["task"] == "tempflex_probes" and written["questions"] == 6
    cmd = [lmms_python, "-m", "lmms_eval", "--model", "tempflex", "--model_args", f"pretrained={saved_tiny},frames=4",
           "--tasks", "tempflex_probes", "--include_path", str(tmp_path / "task"), "--output_path",
           str(tmp_path / "out"), "--log_samples", "--batch_size", "1", "--verbosity", "DEBUG"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(tmp_path), cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = list((tmp_path / "out").rglob("*_results.json"))
    lmms_accuracy = json.loads(results.read_text())["results"]["tempflex_probes"]["accuracy,none"]
    (samples,) = list((tmp_path / "out").rglob("*_samples_tempflex_probes.jsonl"))
    lmms_answers = {}
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        answer = sample["filtered_resps"]
        lmms_answers[sample["accuracy"]["question_id"]] = answer[0] if isinstance(answer, list) else answer

    config = EvalConfig("probes", probes, out=tmp_path / "ours", limit=6, batch_size=4)
    report = run_eval(config, TempFlexResponder(Asker(saved_tiny), ResponderSettings(frames=4)))
    ours = {json.loads(x)["question_id"]: json.loads(x)["prediction"]
            for x in (tmp_path / "ours" / "predictions.jsonl").read_text().splitlines()}
    assert lmms_answers == ours
    assert lmms_accuracy == pytest.approx(report.overall.accuracy)


LIKELIHOOD = """
import json, sys
from types import SimpleNamespace
from tempflex.integrations.lmms_eval.model import TempFlexLMMS
model_dir, video = sys.argv[1], sys.argv[2]
lm = TempFlexLMMS(pretrained=model_dir, frames=2, scoring="generate", max_new_tokens=3)
doc = {"question_id": "q"}
lm.task_dict = {"t": {"test": [doc]}}
visual = lambda d: [video]
ll = lm.loglikelihood([SimpleNamespace(args=("Which way?", lambda d: " left", visual, 0, "t", "test"))])
def rounds(d, previous_output, round_idx, previous_round_info):
    if round_idx == 2:
        return None, None, True, list(previous_output), None
    return [video], "And then?", False, None, None
multi = lm.generate_until_multi_round([SimpleNamespace(args=("Which way?", {}, visual, rounds, 0, "t", "test"))])
free = lm.generate_until([SimpleNamespace(args=("Which way?", {"max_new_tokens": 2}, visual, 0, "t", "test"))])
print(json.dumps({"ll": ll, "multi": multi, "free": free}))
"""


def test_loglikelihood_and_multi_round(lmms_python, saved_tiny, probes, tmp_path):
    video = next((probes / "videos" / "test").glob("*.mp4"))
    done = subprocess.run([lmms_python, "-c", LIKELIHOOD, str(saved_tiny), str(video)], capture_output=True,
                          text=True, timeout=600, env=_env(tmp_path), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ((nll, greedy),) = out["ll"]
    assert nll > 0 and isinstance(greedy, bool)  # a negative log-likelihood, per continuation token
    (rounds,) = out["multi"]
    assert len(rounds) == 2 and all(isinstance(r, str) for r in rounds)
    assert len(out["free"]) == 1 and isinstance(out["free"][0], str)
    assert sys.executable != lmms_python
