"""Questions per second of three ways to score the same benchmark questions with the same model, side by side:

1. ``tempflex eval probes`` (one process: the model loaded once, questions batched, the next videos decoded while
   the model runs);
2. lmms-eval with the ``tempflex`` plug-in (``python -m lmms_eval --model tempflex`` on the task
   ``tempflex eval export-lmms`` writes; one process, one question at a time), in its own environment
   (.ci/lmms_env.sh);
3. one ``tempflex ask`` process per question (the model loaded for every question): the baseline.

Each is timed end to end as a user runs it (process start, model load, all questions); the in-loop rate of
``tempflex eval`` (after the load) is printed too. The fixture is a fresh probe set (test split), which the default
model tempflex-tiny was trained on the kind of; the three must give the same answers, and the script says whether
they do.

    .venv/bin/python benchmarks/bench_eval.py --questions 24 --ask-questions 4

Writes benchmarks/results/eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start, done.stdout


def model_args(model: Path | None) -> list[str]:
    return ["--model", str(model)] if model else []


def run_tempflex_eval(data: Path, out: Path, args) -> tuple[float, dict, dict[str, str]]:
    cmd = [sys.executable, "-m", "tempflex", "eval", "probes", "--data", str(data), "--frames", str(args.frames),
           "--limit", str(args.questions), "--batch-size", str(args.batch_size), "--out", str(out), "--json",
           *model_args(args.model)]
    seconds, stdout = timed(cmd)
    answers = {json.loads(x)["question_id"]: json.loads(x)["prediction"]
               for x in (out / "predictions.jsonl").read_text().splitlines()}
    return seconds, json.loads(stdout), answers


def run_lmms(data: Path, work: Path, args) -> tuple[float, dict[str, str]]:
    from tempflex.integrations.lmms_eval.task import export_task

    python = args.lmms_python or subprocess.run(["bash", str(ROOT / ".ci" / "lmms_env.sh")], capture_output=True,
                                                text=True, check=True).stdout.strip().splitlines()[-1]
    export_task("probes", data, work / "task", limit=args.questions)
    margs = f"frames={args.frames}" + (f",pretrained={args.model}" if args.model else "")
    cmd = [python, "-m", "lmms_eval", "--model", "tempflex", "--model_args", margs, "--tasks", "tempflex_probes",
           "--include_path", str(work / "task"), "--output_path", str(work / "out"), "--log_samples",
           "--batch_size", "1", "--verbosity", "DEBUG"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf")}
    seconds, _ = timed(cmd, env)
    (samples,) = list((work / "out").rglob("*_samples_tempflex_probes.jsonl"))
    answers = {}
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        resp = sample["filtered_resps"]
        answers[sample["accuracy"]["question_id"]] = resp[0] if isinstance(resp, list) else resp
    return seconds, answers


def run_ask(data: Path, args) -> tuple[float, dict[str, str]]:
    records = [json.loads(x) for x in (data / "test.jsonl").read_text().splitlines()][: args.ask_questions]
    answers, seconds = {}, 0.0
    for r in records:
        options = [x for o in r["options"] for x in ("--option", o)]
        cmd = [sys.executable, "-m", "tempflex", "ask", r["question"], "--video", str(data / r["video"]),
               "--frames", str(args.frames), "--json", *options, *model_args(args.model)]
        spent, stdout = timed(cmd)
        seconds += spent
        answers[r["id"]] = json.loads(stdout)["choice"]
    return seconds, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=24, help="probe questions for tempflex eval and lmms-eval")
    parser.add_argument("--ask-questions", type=int, default=4, help="questions for the one-process-each baseline")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model", type=Path, default=None, help="a saved model (default: tempflex-tiny)")
    parser.add_argument("--lmms-python", default=None, help="lmms-eval's python (default: from .ci/lmms_env.sh)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval.md")
    args = parser.parse_args()

    from tempflex.probes import ProbeSettings, generate_probes

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "probes"
        generate_probes(data, seed=11, n=args.questions, settings=ProbeSettings(split={"test": 1.0}))
        eval_s, report, ours = run_tempflex_eval(data, work / "eval", args)
        lmms_s, theirs = run_lmms(data, work / "lmms", args)
        ask_s, alone = run_ask(data, args)

    rows = [("tempflex eval", args.questions, eval_s), ("lmms-eval + tempflex plug-in", args.questions, lmms_s),
            ("one `tempflex ask` per question", args.ask_questions, ask_s)]
    base = args.ask_questions / ask_s
    same_lmms = sum(theirs.get(k) == v for k, v in ours.items())
    same_ask = sum(ours.get(k) == v for k, v in alone.items())
    lines = [
        (f"Model: {args.model or 'tempflex-tiny'}, {args.frames} frames, probe questions (seed 11), "
         f"batch size {args.batch_size}; end to end (process start, model load, every question)."), "",
        "| route | questions | seconds | questions/s | vs one ask process per question |",
        "|---|---|---|---|---|",
        *(f"| {name} | {n} | {s:.1f} | {n / s:.3f} | {n / s / base:.1f}x |" for name, n, s in rows), "",
        (f"tempflex eval's loop alone (after loading): {report['questions_per_second']:.2f} questions/s; "
         f"accuracy {report['overall']['accuracy']:.3f} on {report['questions']} questions."),
        f"Same answers: lmms-eval {same_lmms}/{len(ours)}, tempflex ask {same_ask}/{len(alone)}.",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# bench_eval\n\n    {' '.join(sys.argv)}\n\n{text}\n")


if __name__ == "__main__":
    main()
