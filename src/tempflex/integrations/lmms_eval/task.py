"""``export_task``: a benchmark's questions (a fixture, a probe set, a real benchmark folder) as a local
lmms-eval task: ``<task>.yaml`` (``dataset_path: json`` over ``docs.jsonl``, ``output_type: generate_until``),
``utils.py`` (the prompt, the video, and the benchmark's own rule through ``tempflex.eval``) and ``docs.jsonl``.

Run it with ``python -m lmms_eval --model tempflex --tasks <task> --include_path DIR`` and HF_HUB_OFFLINE=1,
HF_DATASETS_OFFLINE=1. generate_until rather than multiple_choice: lmms-eval 0.7.3's multiple_choice fails for
every model.
"""

from __future__ import annotations

import json
from pathlib import Path

from tempflex.atomic import write_text_atomic
from tempflex.eval.registry import get_benchmark

YAML = """\
# A local lmms-eval task written by `tempflex eval export-lmms {benchmark}`:
#   HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python -m lmms_eval --model tempflex --tasks {task} --include_path {root}
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  do_sample: false
  temperature: 0
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: !function utils.aggregate
    higher_is_better: true
"""

UTILS = '''\
"""Prompt, video and scoring of a task written by `tempflex eval export-lmms` (scoring: tempflex.eval's rule)."""


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]


def process_results(doc, results):
    import json

    from tempflex.eval import Question, get_benchmark

    question = Question(id=doc["question_id"], video=doc["video"], prompt=doc["prompt"], answer=doc["answer"],
                        choices=doc["tempflex_choices"], options=doc["options"], meta=json.loads(doc["meta"]))
    verdict = get_benchmark(doc["benchmark"]).judge(question, results[0])
    return {"accuracy": {"question_id": doc["question_id"], "prediction": results[0], "correct": verdict.correct}}


def aggregate(results):
    return sum(r["correct"] for r in results) / len(results) if results else 0.0
'''


def export_task(benchmark: str, data: Path, out: Path, *, videos: Path | None = None, limit: int | None = None,
                task: str | None = None) -> dict:
    """Write the task; returns its name, question count and file paths. Subtitled prompts are not exported."""
    bench = get_benchmark(benchmark)
    questions = bench.load(Path(data), videos)
    questions = questions[:limit] if limit else questions
    if any(q.subtitles is not None for q in questions):
        raise ValueError(f"{bench.name}: prompts with subtitles depend on the sampled frames; export the benchmark "
                         "without subtitles")
    name = task or f"tempflex_{bench.name}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    docs = out / "docs.jsonl"
    rows = [{"question_id": q.id, "benchmark": bench.name, "video": str(Path(q.video).resolve()), "prompt": q.prompt,
             "answer": q.answer, "tempflex_choices": q.choices, "options": q.options,
             "groups": json.dumps(q.groups), "meta": json.dumps(q.meta), "start": q.start, "end": q.end}
            for q in questions]
    write_text_atomic(docs, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_text_atomic(out / "utils.py", UTILS)
    yaml = YAML.format(benchmark=bench.name, task=name, root=out.resolve(), docs=docs.resolve(),
                       max_new_tokens=bench.max_new_tokens)
    write_text_atomic(out / f"{name}.yaml", yaml)
    return {"task": name, "questions": len(rows), "yaml": out / f"{name}.yaml", "docs": docs, "utils": out / "utils.py"}
