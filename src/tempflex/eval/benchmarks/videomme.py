"""Video-MME (lmms-lab/Video-MME): 900 videos, 2,700 four-option questions; short / medium / long videos.

Files: ``videomme/test-*.parquet`` (columns video_id, duration, domain, sub_category, videoID, question_id,
task_type, question, options ["A. ...", ...], answer "A"), videos ``data/<videoID>.mp4`` and, for the variant
with subtitles, ``subtitle/<videoID>.srt``. Prompt and answer reading as lmms-eval's ``videomme`` task; accuracy
overall, per duration, per domain, sub-category and task type.
"""

from __future__ import annotations

import re
from pathlib import Path

from tempflex.eval.base import Question, Verdict, check_questions
from tempflex.eval.extract import first_capital_letter
from tempflex.eval.tables import find_video, read_rows, require

FILES = "videomme/test-*.parquet (or *.json/*.jsonl), data/<videoID>.mp4[, subtitle/<videoID>.srt]"
INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video{}. Respond with "
               "only the letter (A, B, C, or D) of the correct option.")
KEYS = ("videoID", "question_id", "duration", "domain", "sub_category", "task_type", "question", "options", "answer")


def read_srt(path: Path) -> list[tuple[float, float, str]]:
    """Subtitle cues (start s, end s, text without its <font> markup) of an .srt file."""
    cues = []
    for block in path.read_text(encoding="utf-8", errors="replace").replace("\r", "").split("\n\n"):
        lines = block.strip().split("\n")
        if len(lines) < 3 or " --> " not in lines[1]:
            continue
        start, end = (_seconds(t) for t in lines[1].split(" --> "))
        cues.append((start, end, re.sub(r"<[^>]+>", "", " ".join(lines[2:])).strip()))
    return cues


def _seconds(stamp: str) -> float:
    h, m, rest = stamp.strip().split(":")
    s, _, ms = rest.partition(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms or 0) / 1000


class VideoMME:
    name = "videomme"
    title = "Video-MME"
    files = FILES
    groups = ("duration", "domain", "sub_category", "task_type")
    headline = None
    max_new_tokens = 16
    skip_empty = False
    subtitles = False

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        rows = read_rows(data, ("videomme/test-*.parquet", "videomme/*.parquet", "*.parquet", "videomme/*.json",
                                "*.jsonl", "*.json"), f"{self.title} needs {FILES}")
        root = Path(videos) if videos else Path(data) / "data"
        questions = []
        for row in rows:
            require(row, KEYS, f"{self.title} in {data}")
            options = [str(o) for o in row["options"]]
            prompt = "\n".join([INSTRUCTION.format(" and the subtitles" if self.subtitles else ""),
                                str(row["question"]), *options, "The best answer is:"])
            cues = None
            if self.subtitles:
                srt = Path(data) / "subtitle" / f"{row['videoID']}.srt"
                cues = read_srt(srt) if srt.is_file() else []
            questions.append(Question(
                id=str(row["question_id"]), video=find_video(root, str(row["videoID"])), prompt=prompt,
                answer=str(row["answer"]).strip(), choices=list("ABCD")[: len(options)],
                options=[re.sub(r"^[A-D]\.\s*", "", o) for o in options],
                groups={k: str(row[k]) for k in self.groups}, subtitles=cues))
        return check_questions(questions, Path(data))

    def judge(self, question: Question, output: str) -> Verdict:
        read = first_capital_letter(output)
        return Verdict(read, read.lower() == question.answer.lower(), bool(read))



class VideoMMESubtitles(VideoMME):
    name = "videomme_w_subtitle"
    title = "Video-MME (with subtitles)"
    subtitles = True
