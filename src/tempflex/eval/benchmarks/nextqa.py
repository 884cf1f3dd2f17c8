"""NExT-QA, multiple choice (lmms-lab/NExTQA, config MC): causal, temporal and descriptive questions, 5 options.

Files: ``MC/test-*.parquet`` (columns video, question, a0..a4, answer (index), qid, type) and videos
``NExTVideo/<video>.mp4``. Answer reading by MMMU's parser as lmms-eval's ``nextqa_mc_test``; an unreadable answer
gets a guess seeded by the question id. Accuracy per question type (CW, CH, TN, TC, DC, DL, DO) and per family
(causal C, temporal T, descriptive D).
"""

from __future__ import annotations

from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions, lettered
from tempflex.eval.extract import mmmu_letter
from tempflex.eval.tables import find_video, read_rows, require

FILES = "MC/test-*.parquet (or .json/.jsonl), NExTVideo/<video>.mp4"
TAIL = "\nAnswer with the option's letter from the given choices directly."
FAMILIES = {"C": "causal", "T": "temporal", "D": "descriptive"}


class NExTQA:
    name = "nextqa"
    title = "NExT-QA (multiple choice)"
    files = FILES
    groups = ("family", "type")
    headline = None
    max_new_tokens = 16
    skip_empty = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        rows = read_rows(data, ("MC/test-*.parquet", "MC/*.parquet", "MC/*.jsonl", "MC/*.json"),
                         f"{self.title} needs {FILES}")
        root = Path(videos) if videos else Path(data) / "NExTVideo"
        questions = []
        for row in rows:
            require(row, ("video", "question", "a0", "a1", "a2", "a3", "a4", "answer", "qid", "type"),
                    f"{self.title} in {data}")
            options = [str(row[f"a{i}"]).strip() for i in range(5)]
            qtype = "TN" if row["type"] == "TP" else str(row["type"])
            questions.append(Question(
                id=f"{row['video']}-{row['qid']}", video=find_video(root, str(row["video"])),
                prompt="\n".join([str(row["question"]).strip(), *lettered(options)]) + TAIL,
                answer="ABCDE"[int(row["answer"])], choices=list("ABCDE"), options=options,
                groups={"family": FAMILIES.get(qtype[0], qtype[0]), "type": qtype}))
        return check_questions(questions, Path(data))

    def judge(self, question: Question, output: str) -> Verdict:
        read, matched = mmmu_letter(output, question.options, question.id)
        return Verdict(read, read == question.answer, matched)
