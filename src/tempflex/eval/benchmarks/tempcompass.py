"""TempCompass (lmms-lab/TempCompass): temporal aspects (action, speed, direction, order, attribute change) asked
in three formats, each its own benchmark here: multiple choice, yes/no, and caption matching.

Files: ``<format>/test-*.parquet`` with format ``multi-choice``, ``yes_no`` or ``caption_matching`` (columns
video_id, question (options on its following lines), answer, dim), videos ``videos/<video_id>.mp4``. Answer
reading by lmms-eval's TempCompass rules; where they match nothing, its release asks a GPT judge, which cannot run
offline: such answers count as wrong and are marked unmatched. Accuracy per dimension.
"""

from __future__ import annotations

import re
from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions
from tempflex.eval.extract import tempcompass_caption, tempcompass_choice, yes_no
from tempflex.eval.tables import find_video, read_rows, require

TAILS = {"multi-choice": "\nPlease directly give the best option:", "yes_no": "\nPlease answer yes or no:",
         "caption_matching": "\nPlease directly give the best option:"}


class TempCompass:
    name = "tempcompass_mc"
    title = "TempCompass (multiple choice)"
    config = "multi-choice"
    groups = ("dim",)
    headline = None
    max_new_tokens = 16
    skip_empty = False

    @property
    def files(self) -> str:
        return f"{self.config}/test-*.parquet (or .json/.jsonl), videos/<video_id>.mp4"

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        rows = read_rows(data, (f"{self.config}/*.parquet", f"{self.config}/*.jsonl", f"{self.config}/*.json"),
                         f"{self.title} needs {self.files}")
        root = Path(videos) if videos else Path(data) / "videos"
        questions = []
        for i, row in enumerate(rows):
            require(row, ("video_id", "question", "answer", "dim"), f"{self.title} in {data}")
            question, answer = str(row["question"]), str(row["answer"])
            choices, options = self._choices(question)
            questions.append(Question(
                id=f"{self.config}-{row['video_id']}-{i}", video=find_video(root, str(row["video_id"])),
                prompt=question + TAILS[self.config], answer=answer, choices=choices, options=options,
                groups={"dim": str(row["dim"])}, meta={"question": question}))
        return check_questions(questions, Path(data))

    def _choices(self, question: str) -> tuple[list[str], list[str]]:
        """Option scoring's labels and the options' texts, read from the question's lines after the first."""
        lines = [line for line in question.split("\n")[1:] if line.strip()]
        if self.config == "multi-choice":
            parsed = [re.match(r"^([A-H])\.\s*(.*)$", line) for line in lines]
            return [m.group(1) for m in parsed if m], [m.group(2) for m in parsed if m]
        parsed = [line.split(": ", 1) for line in lines if ": " in line]
        return [label.split()[-1] for label, _ in parsed], [text for _, text in parsed]

    def judge(self, question: Question, output: str) -> Verdict:
        if self.config == "multi-choice":
            read, ok = tempcompass_choice(output, question.answer)
        else:
            read, ok = tempcompass_caption(output, question.meta["question"], question.answer)
        return Verdict(read, bool(ok), ok is not None)


class TempCompassYesNo(TempCompass):
    name = "tempcompass_yes_no"
    title = "TempCompass (yes/no)"
    config = "yes_no"

    def _choices(self, question: str) -> tuple[list[str], list[str]]:
        return ["yes", "no"], ["yes", "no"]

    def judge(self, question: Question, output: str) -> Verdict:
        read = yes_no(output)
        return Verdict(read, bool(read) and read == question.answer.strip().lower(), bool(read))


class TempCompassCaptions(TempCompass):
    name = "tempcompass_caption_matching"
    title = "TempCompass (caption matching)"
    config = "caption_matching"
