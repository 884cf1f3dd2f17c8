"""MLVU (MLVU dev): long videos, seven multiple-choice tasks (plot QA, needle QA, ego reasoning, action count,
action order, anomaly recognition, topic reasoning); the generation tasks are not scored here.

Files: ``json/<n>_<task>.json`` (a list of {video, duration, question, candidates, answer (the right candidate's
text), question_type}) and videos ``video/<n>_<task>/<video>``, MLVU's release. Prompt and answer reading as
lmms-eval's ``mlvu_dev`` task; the headline is M-Avg, the mean accuracy over the task types present.
"""

from __future__ import annotations

from pathlib import Path

from tempflex.eval.base import LETTERS, Question, Verdict, check_questions
from tempflex.eval.extract import first_capital_letter
from tempflex.eval.tables import find_files, read_table, require

TASK_TYPES = {"plotQA": "PQA", "needle": "NQA", "ego": "ER", "count": "AC", "order": "AO", "anomaly_reco": "AR",
              "topic_reasoning": "TR"}  # MLVU's multiple-choice tasks and lmms-eval's short names
FILES = "json/<n>_<task>.json (1_plotQA.json, ..., 7_topic_reasoning.json), video/<n>_<task>/<video>"


class MLVU:
    name = "mlvu"
    title = "MLVU (dev, multiple choice)"
    files = FILES
    groups = ("task_type",)
    headline = "task_type"
    max_new_tokens = 16
    skip_empty = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        data = Path(data)
        questions = []
        for path in find_files(data, ("json/*.json",), f"{self.title} needs {FILES}"):
            task = path.stem.split("_", 1)[-1]
            if task not in TASK_TYPES:
                continue  # a generation task (sub-scene captioning, summary): not multiple choice
            folder = (Path(videos) if videos else data / "video") / path.stem
            for i, row in enumerate(read_table(path)):
                require(row, ("video", "question", "candidates", "answer"), str(path))
                candidates = [str(c) for c in row["candidates"]]
                if row["answer"] not in candidates:
                    raise ValueError(f"{path} item {i}: its answer {row['answer']!r} is not a candidate")
                video = folder / str(row["video"])
                if not video.is_file():
                    raise FileNotFoundError(f"MLVU {task} item {i}: video {video} not found")
                options = "\n".join(f"({LETTERS[j]}) {c}" for j, c in enumerate(candidates))
                prompt = "\n" + f"Question: {row['question']}\nOptions:\n{options}" + "\nOnly give the best option.\n"
                questions.append(Question(
                    id=f"{path.stem}-{i}", video=video, prompt=prompt + "\nBest option: (",
                    answer=LETTERS[candidates.index(row["answer"])], choices=list(LETTERS[: len(candidates)]),
                    options=candidates, groups={"task_type": TASK_TYPES[task]}))
        if not questions:
            raise ValueError(f"{data / 'json'} holds none of MLVU's multiple-choice tasks ({', '.join(TASK_TYPES)})")
        return check_questions(questions, data)

    def judge(self, question: Question, output: str) -> Verdict:
        read = first_capital_letter(output)
        return Verdict(read, read == question.answer, bool(read))
