"""tempflex.eval with a real (tiny, random) TempFlex model: the responder's three ways to answer, batching parity
with one-at-a-time answers, a token budget, and the `tempflex eval` command line."""

from __future__ import annotations

import json

import eval_fixtures as fx
import pytest
from typer.testing import CliRunner

from tempflex.ask import Asker, load_media
from tempflex.eval import EvalConfig, ResponderSettings, TempFlexResponder, load_questions, run_eval


@pytest.fixture(scope="module")
def asker(saved_tiny) -> Asker:
    return Asker(saved_tiny)


@pytest.fixture(scope="module")
def videomme_dir(probes, tmp_path_factory):
    out = tmp_path_factory.mktemp("videomme")
    fx.videomme(probes, out)
    return out


def test_option_scoring_in_batches_matches_asking_one_at_a_time(asker, probes, tmp_path):
    config = EvalConfig("probes", probes, out=tmp_path / "run", limit=6, batch_size=4)
    responder = TempFlexResponder(asker, ResponderSettings(frames=4))
    report = run_eval(config, responder)
    _, questions = load_questions(config)
    lines = [json.loads(x) for x in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert [x["question_id"] for x in lines] == [q.id for q in questions]
    for q, line in zip(questions, lines):
        media = load_media(video=q.video, frames=4)
        alone = asker.ask(q.prompt.split("\n")[0], media, options=q.options)
        assert line["prediction"] == alone.choice and line["visual_tokens"] == alone.visual_tokens
        assert line["correct"] == (line["prediction"] == q.answer)
    assert report.overall.correct == sum(x["correct"] for x in lines) and report.overall.n == 6


@pytest.mark.parametrize("scoring", ["options", "text", "generate"])
def test_each_scoring_on_videomme(asker, videomme_dir, tmp_path, scoring):
    config = EvalConfig("videomme", videomme_dir, out=tmp_path / scoring, limit=3, batch_size=2, scoring=scoring)
    report = run_eval(config, TempFlexResponder(asker, ResponderSettings(frames=4, scoring=scoring, max_new_tokens=4)))
    lines = [json.loads(x) for x in (tmp_path / scoring / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 3 == report.overall.n and all(x["visual_tokens"] > 0 for x in lines)
    if scoring != "generate":  # a label of the options: always read by Video-MME's rule
        assert all(x["prediction"] in "ABCD" and x["matched"] for x in lines)


def test_token_budget_caps_visual_tokens(asker, videomme_dir, tmp_path):
    settings = ResponderSettings(frames=4, budget={"budget": 16, "reducer": "uniform"})
    run_eval(EvalConfig("videomme", videomme_dir, out=tmp_path / "b", limit=2), TempFlexResponder(asker, settings))
    lines = [json.loads(x) for x in (tmp_path / "b" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(0 < x["visual_tokens"] <= 16 for x in lines)


def _cli():
    from tempflex.cli.app import app

    return app


def test_cli_list_run_resume_export_and_errors(saved_tiny, videomme_dir, probes, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(_cli(), ["eval", "--list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {"videomme", "mvbench", "egoschema", "probes"} <= {b["name"] for b in json.loads(listed.stdout)}
    args = ["eval", "videomme", "--data", str(videomme_dir), "--model", str(saved_tiny), "--frames", "4",
            "--limit", "4", "--out", str(tmp_path / "run")]
    first = runner.invoke(_cli(), [*args, "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["questions"] == 4 and set(report["groups"]) == {"duration", "domain", "sub_category", "task_type"}
    assert (tmp_path / "run" / "accuracy.png").is_file()
    again = runner.invoke(_cli(), args)  # everything answered: the same report, nothing asked again
    assert again.exit_code == 0 and "overall" in again.stdout
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 4
    changed = runner.invoke(_cli(), [*args, "--frames", "2"])
    assert changed.exit_code == 2 and "other settings (frames differ)" in changed.stderr
    exported = runner.invoke(_cli(), ["eval", "export-lmms", "probes", str(tmp_path / "task"), "--data", str(probes),
                                      "--limit", "2"])
    assert exported.exit_code == 0 and "--tasks tempflex_probes" in exported.stdout, exported.output
    assert (tmp_path / "task" / "tempflex_probes.yaml").is_file()
    assert len((tmp_path / "task" / "docs.jsonl").read_text().splitlines()) == 2
    for bad, message in ((["eval", "nope", "--data", str(tmp_path)], "unknown benchmark 'nope'"),
                         (["eval", "export-lmms", "probes"], "usage: tempflex eval export-lmms"),
                         (["eval", "mvbench", "--data", str(tmp_path)], "MVBench needs json/<task>.json"),
                         (["eval", "videomme"], "--data DIR is required")):
        result = runner.invoke(_cli(), bad)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_default_model_batched_answers_equal_asking_alone(probes, tmp_path):
    """tempflex-tiny (its Gemma3-270M from the wheel): the batched run answers as `tempflex ask` does."""
    asker = Asker()
    config = EvalConfig("probes", probes, out=tmp_path / "tiny", limit=3, batch_size=3)
    report = run_eval(config, TempFlexResponder(asker, ResponderSettings(frames=8)))
    _, questions = load_questions(config)
    lines = [json.loads(x) for x in (tmp_path / "tiny" / "predictions.jsonl").read_text().splitlines()]
    for q, line in zip(questions, lines):
        alone = asker.ask(q.prompt.split("\n")[0], load_media(video=q.video, frames=8),
                          options=q.options)
        assert line["prediction"] == alone.choice
    assert report.overall.n == 3


def test_sigkill_mid_run_then_rerun_finishes_without_repeats(saved_tiny, probes, tmp_path):
    """A `tempflex eval` process killed with SIGKILL after its first answers; the same command finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tempflex", "eval", "probes", "--data", str(probes), "--model", str(saved_tiny),
           "--frames", "4", "--batch-size", "1", "--out", str(out), "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if predictions.is_file() and predictions.read_text().count("\n") >= 2:
            os.kill(first.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = predictions.read_text().count("\n")
    assert 2 <= killed_at < 20 and not (out / "report.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [json.loads(x)["question_id"] for x in predictions.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 20 and json.loads(done.stdout)["questions"] == 20
