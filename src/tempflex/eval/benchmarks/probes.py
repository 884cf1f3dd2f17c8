"""The project's synthetic temporal probes as a benchmark (``tempflex probes generate``'s folders).

Files: ``<split>.jsonl`` (the test split by default) and ``videos/<split>/...``. The answer is an option's text
(the probes' format, ``tempflex.probes.format``): option scoring compares the options' texts, and a free answer is
right when it starts with the right option (any case). Accuracy per skill.
"""

from __future__ import annotations

from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions
from tempflex.eval.tables import find_files, read_table, require
from tempflex.probes.format import format_question

FILES = "test.jsonl (a probe set made by `tempflex probes generate`), videos/test/*.mp4"


class Probes:
    name = "probes"
    title = "temporal probes (test split)"
    files = FILES
    groups = ("skill",)
    headline = None
    max_new_tokens = 8
    skip_empty = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        (path,) = find_files(data, ("test.jsonl",), f"the probes need {FILES}")
        root = Path(videos) if videos else Path(data)
        questions = []
        for row in read_table(path):
            require(row, ("id", "video", "question", "options", "answer", "skill"), str(path))
            options = [str(o) for o in row["options"]]
            video = root / str(row["video"])
            if not video.is_file():
                raise FileNotFoundError(f"probe {row['id']}: video {video} not found")
            questions.append(Question(
                id=str(row["id"]), video=video, prompt=format_question(str(row["question"]), options),
                answer=str(row["answer"]), choices=options, options=options, groups={"skill": str(row["skill"])}))
        return check_questions(questions, path)

    def judge(self, question: Question, output: str) -> Verdict:
        text = output.strip().lower()
        read = next((c for c in sorted(question.choices, key=len, reverse=True) if text.startswith(c.lower())), "")
        return Verdict(read, read == question.answer, bool(read))
