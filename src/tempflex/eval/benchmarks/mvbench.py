"""MVBench (OpenGVLab/MVBench): 20 temporal tasks of 200 questions, each task's videos in its own source folder.

Files: ``json/<task>.json`` (a list of {video, question, candidates, answer (the right candidate's text)}, some
with start/end bounds in seconds) and the videos under ``video/<folder>/<video>``, the folder per task as
lmms-eval's MVBench tasks map them (``star/Charades_segment`` for action_sequence, ...); a folder without the
``video/`` level is accepted too. Prompt "Question:...\\nOption:\\n(A) ...", answer reading by MVBench's
``mcq_acc``; empty answers leave the denominator, as in lmms-eval. Accuracy per task; the headline is the mean
over tasks.
"""

from __future__ import annotations

from pathlib import Path

from tempflex.eval.base import LETTERS, Question, Verdict, check_questions
from tempflex.eval.extract import mvbench_letter
from tempflex.eval.tables import find_files, read_table, require

TASK_FOLDERS = {  # task -> the folder its videos live in (MVBench's release, as lmms-eval reads it)
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_antonym": "ssv2_video_mp4",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "unexpected_action": "FunQA_test/test",
    "object_existence": "clevrer/video_validation",
    "object_interaction": "star/Charades_segment",
    "object_shuffle": "perception/videos",
    "moving_direction": "clevrer/video_validation",
    "action_localization": "sta/sta_video_segment",
    "scene_transition": "scene_qa/video",
    "action_count": "perception/videos",
    "moving_count": "clevrer/video_validation",
    "moving_attribute": "clevrer/video_validation",
    "state_change": "perception/videos",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "counterfactual_inference": "clevrer/video_validation",
}
FILES = "json/<task>.json for any of its 20 tasks, video/<task folder>/<video> (e.g. video/star/Charades_segment/)"
TAIL = "Answer with the option's letter from the given choices directly."


class MVBench:
    name = "mvbench"
    title = "MVBench"
    files = FILES
    groups = ("task",)
    headline = "task"
    max_new_tokens = 16
    skip_empty = True

    def load(self, data: Path, videos: Path | None = None) -> list[Question]:
        data = Path(data)
        questions = []
        for path in find_files(data, ("json/*.json",), f"{self.title} needs {FILES}"):
            task = path.stem
            if task not in TASK_FOLDERS:
                raise ValueError(f"{path}: {task!r} is not an MVBench task; known: {', '.join(TASK_FOLDERS)}")
            folder = self._folder(Path(videos) if videos else data, task)
            for i, row in enumerate(read_table(path)):
                require(row, ("video", "question", "candidates", "answer"), str(path))
                questions.append(self._question(task, i, row, folder))
        return check_questions(questions, data)

    @staticmethod
    def _folder(root: Path, task: str) -> Path:
        for base in (root / "video", root):
            if (base / TASK_FOLDERS[task]).is_dir():
                return base / TASK_FOLDERS[task]
        raise FileNotFoundError(f"MVBench task {task}: no folder video/{TASK_FOLDERS[task]} under {root}")

    @staticmethod
    def _question(task: str, index: int, row: dict, folder: Path) -> Question:
        candidates = [str(c) for c in row["candidates"]]
        if row["answer"] not in candidates:
            raise ValueError(f"MVBench {task} item {index}: its answer {row['answer']!r} is not a candidate")
        video = folder / str(row["video"])
        if not video.exists():
            raise FileNotFoundError(f"MVBench {task} item {index}: video {video} not found")
        lines = "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(candidates))
        bounds = {"start": float(row["start"]), "end": float(row["end"])} if "start" in row and "end" in row else {}
        return Question(
            id=f"{task}-{index}", video=video, prompt="Question:" + str(row["question"]) + "\nOption:\n" + lines + TAIL,
            answer=LETTERS[candidates.index(row["answer"])], choices=list(LETTERS[: len(candidates)]),
            options=candidates, groups={"task": task}, **bounds)

    def judge(self, question: Question, output: str) -> Verdict:
        read = mvbench_letter(output)
        return Verdict(read, read == mvbench_letter(question.answer), len(read) == 1)
