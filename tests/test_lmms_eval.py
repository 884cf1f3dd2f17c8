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


@pytest.fixture(scope="module")
def ours(saved_tiny, probes, tmp_path_factory) -> tuple[dict[str, str], float]:
    """`tempflex eval` on the six questions: its answers and accuracy."""
    out = tmp_path_factory.mktemp("ours")
    config = EvalConfig("probes", probes, out=out, limit=6, batch_size=4)
    report = run_eval(config, TempFlexResponder(Asker(saved_tiny), ResponderSettings(frames=4)))
    answers = {json.loads(x)["question_id"]: json.loads(x)["prediction"]
               for x in (out / "predictions.jsonl").read_text().splitlines()}
    return answers, report.overall.accuracy


@pytest.mark.parametrize("route", ["chat", "simple"])  # lmms-eval picks the chat class unless --force_simple
def test_lmms_eval_scores_like_tempflex_eval(lmms_python, saved_tiny, probes, ours, tmp_path, route):
    written = export_task("probes", probes, tmp_path / "task", limit=6)
    assert written["task"] == "tempflex_probes" and written["questions"] == 6
    cmd = [lmms_python, "-m", "lmms_eval", "--model", "tempflex", "--model_args", f"pretrained={saved_tiny},frames=4",
           "--tasks", "tempflex_probes", "--include_path", str(tmp_path / "task"), "--output_path",
           str(tmp_path / "out"), "--log_samples", "--batch_size", "1", "--verbosity", "DEBUG",
           *(["--force_simple"] if route == "simple" else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(tmp_path), cwd=tmp_path,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"TempFlex{'Chat' if route == 'chat' else ''}LMMS" in done.stderr + done.stdout
    (results,) = list((tmp_path / "out").rglob("*_results.json"))
    lmms_accuracy = json.loads(results.read_text())["results"]["tempflex_probes"]["accuracy,none"]
    (samples,) = list((tmp_path / "out").rglob("*_samples_tempflex_probes.jsonl"))
    lmms_answers = {}
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        answer = sample["filtered_resps"]
        lmms_answers[sample["accuracy"]["question_id"]] = answer[0] if isinstance(answer, list) else answer
    assert lmms_answers == ours[0]
    assert lmms_accuracy == pytest.approx(ours[1])


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
from tempflex.integrations.lmms_eval.model import TempFlexChatLMMS
chat = TempFlexChatLMMS(pretrained=model_dir, frames=2, scoring="generate", max_new_tokens=3)
chat.task_dict = lm.task_dict
turn = [{"role": "user", "content": [{"type": "video", "url": video}, {"type": "text", "text": "Which way?"}]}]
def messages(d, round_idx=None, previous_output=None, previous_round_info=None):
    if round_idx is None:
        return turn
    if round_idx == 3:
        return None, True, list(previous_output), None
    return [{"role": "user", "content": [{"type": "text", "text": "And then?"}]}], False, previous_output, None
chat_multi = chat.generate_until_multi_round([SimpleNamespace(args=("", messages, {}, 0, "t", "test"))])
print(json.dumps({"ll": ll, "multi": multi, "free": free, "chat_multi": chat_multi}))
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
    (chat_rounds,) = out["chat_multi"]
    assert len(chat_rounds) == 3 and all(isinstance(r, str) for r in chat_rounds)
    assert sys.executable != lmms_python
