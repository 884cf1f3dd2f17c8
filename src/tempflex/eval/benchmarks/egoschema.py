"""EgoSchema, the subset with public answers: 500 three-minute egocentric clips, five options each.

Files: ``questions.json`` (a list of {q_uid, question, option 0, ..., option 4}), ``subset_answers.json``
({q_uid: index}) and videos ``videos/<q_uid>.mp4``, EgoSchema's release; only questions with an answer are
scored. Prompt and answer reading as lmms-eval's ``egoschema_subset`` task (an unreadable answer is wrong).
"""

from __future__ import annotations

import json
from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions, lettered
from tempflex.eval.tables import find_files, find_video, read_table, require

FILES = "questions.json, subset_answers.json, videos/<q_uid>.mp4"
TAIL = "\nAnswer with the option's letter from the given choices directly."


class EgoSchema:
    name = "egoschema"
    title = "EgoSchema (subset)"
    files = FILES
    groups = ()
    headline = None
    max_new_tokens = 16
    skip_empty = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        what = f"{self.title} needs {FILES}"
        (qpath,) = find_files(data, ("questions.json",), what)
        (apath,) = find_files(data, ("subset_answers.json",), what)
        answers = json.loads(apath.read_text())
        root = Path(videos) if videos else Path(data) / "videos"
        questions = []
        for row in read_table(qpath):
            require(row, ("q_uid", "question", "option 0", "option 4"), str(qpath))
            if row["q_uid"] not in answers:
                continue
            options = [str(row[f"option {i}"]) for i in range(5)]
            lines = lettered(options)
            questions.append(Question(
                id=str(row["q_uid"]), video=find_video(root, str(row["q_uid"])),
                prompt=str(row["question"]) + "".join("\n" + line for line in lines) + TAIL,
                answer="ABCDE"[int(answers[row["q_uid"]])], choices=list("ABCDE"), options=options,
                meta={"lines": lines}))
        return check_questions(questions, apath)

    def judge(self, question: Question, output: str) -> Verdict:
        """lmms-eval's rule: the output equals a whole option line, an option's text, or its letter."""
        lines = [line if line.endswith(".") else line + "." for line in question.meta["lines"]]
        texts = [line.split(". ", 1)[1] if ". " in line else line for line in lines]
        letters = [line.split(". ", 1)[0] if ". " in line else line for line in lines]
        index = next((i for i, line in enumerate(lines) if output == line), None)
        if index is None:
            index = next((i for i, text in enumerate(texts) if output == text), None)
        if index is None:
            index = next((i for i, x in enumerate(letters) if output in (x, x.replace(".", ""))), None)
        read = "ABCDE"[index] if index is not None else ""
        return Verdict(read, read == question.answer, index is not None)
