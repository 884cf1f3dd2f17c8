"""LongVideoBench (validation split): referring reasoning over videos of 8 s to an hour, 4-5 options.

Files: ``lvb_val.json`` (a list of {id, video_path, question, candidates (or option0..option4 with "N/A"),
correct_choice (index), duration_group, question_category, ...}) and videos ``videos/<video_path>``, the release
as lmms-eval's ``longvideobench_val_v`` task reads it (video only, no interleaved subtitles). Answer reading as
lmms-eval's; an unreadable answer gets a guess seeded by the question id. Accuracy per duration group and
question category.
"""

from __future__ import annotations

from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions, lettered
from tempflex.eval.extract import lvb_letter
from tempflex.eval.tables import find_files, read_table, require

FILES = "lvb_val.json, videos/<video_path>"
TAIL = "Answer with the option's letter from the given choices directly.\n"


class LongVideoBench:
    name = "longvideobench"
    title = "LongVideoBench (val)"
    files = FILES
    groups = ("duration_group", "question_category")
    headline = None
    max_new_tokens = 32
    skip_empty = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        (path,) = find_files(data, ("lvb_val.json", "lvb_val.jsonl"), f"{self.title} needs {FILES}")[:1]
        root = Path(videos) if videos else Path(data) / "videos"
        questions = []
        for row in read_table(path):
            require(row, ("id", "video_path", "question", "correct_choice", "duration_group", "question_category"),
                    str(path))
            candidates = row.get("candidates") or [row[f"option{i}"] for i in range(5)
                                                   if row.get(f"option{i}", "N/A") != "N/A"]
            video = root / str(row["video_path"])
            if not video.is_file():
                raise FileNotFoundError(f"LongVideoBench {row['id']}: video {video} not found")
            letters = [chr(ord("A") + i) for i in range(len(candidates))]
            questions.append(Question(
                id=str(row["id"]), video=video,
                prompt=str(row["question"]) + "\n" + "\n".join(lettered(candidates)) + "\n" + TAIL,
                answer=letters[int(row["correct_choice"])], choices=letters, options=[str(c) for c in candidates],
                groups={"duration_group": str(row["duration_group"]),
                        "question_category": str(row["question_category"])}))
        return check_questions(questions, path)

    def judge(self, question: Question, output: str) -> Verdict:
        read, matched = lvb_letter(output, question.choices, question.id)
        return Verdict(read, read == question.answer, matched)
