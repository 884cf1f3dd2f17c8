"""Small copies of each benchmark's published layout, built from probe videos whose answers are known.

``build(name, probes_dir, out)`` writes ``out`` in the layout ``tempflex.eval`` reads for benchmark ``name`` and
returns the questions' ids with their right answer letters (or yes/no), in file order. Options are the probes'
options (padded with fillers where a benchmark has five), so a model trained on the probes can answer them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

LETTERS = "ABCDEFGH"
FILLERS = ["nothing moves", "it cannot be seen", "none of these", "all of them"]
DURATIONS = ("short", "medium", "long")


def probe_records(probes: Path, n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (probes / "test.jsonl").read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _parquet(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _json(data, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _five(rec: dict) -> list[str]:
    return list(rec["options"]) + FILLERS[: 5 - len(rec["options"])]


def videomme(probes: Path, out: Path, n: int = 6) -> list[tuple[str, str]]:
    rows, answers = [], []
    for i, rec in enumerate(probe_records(probes, n)):
        vid = f"vid{i:03d}"
        _copy(probes / rec["video"], out / "data" / f"{vid}.mp4")
        letter = LETTERS[rec["answer_index"]]
        rows.append({"video_id": f"{i + 1:03d}", "duration": DURATIONS[i % 3], "domain": "Knowledge",
                     "sub_category": "Astronomy", "url": "", "videoID": vid, "question_id": f"{i + 1:03d}-1",
                     "task_type": "Temporal Perception" if rec["temporal"] else "Object Recognition",
                     "question": rec["question"], "options": [f"{LETTERS[j]}. {o}" for j, o in enumerate(rec["options"])],
                     "answer": letter})
        (out / "subtitle").mkdir(parents=True, exist_ok=True)
        (out / "subtitle" / f"{vid}.srt").write_text(
            f'1\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">first second of {vid}</font>\n\n'
            f"2\n00:00:01,000 --> 00:01:00,000\nthe rest of {vid}\n\n")
        answers.append((f"{i + 1:03d}-1", letter))
    _parquet(rows, out / "videomme" / "test-00000-of-00001.parquet")
    return answers


MVBENCH_TASKS = {"action_sequence": "star/Charades_segment", "moving_direction": "clevrer/video_validation",
                 "fine_grained_pose": "nturgbd_convert"}


def mvbench(probes: Path, out: Path, n: int = 6) -> list[tuple[str, str]]:
    tasks = {t: [] for t in MVBENCH_TASKS}
    answers = []
    for i, rec in enumerate(probe_records(probes, n)):
        task = list(MVBENCH_TASKS)[i % len(MVBENCH_TASKS)]
        name = f"clip_{i}.mp4"
        _copy(probes / rec["video"], out / "video" / MVBENCH_TASKS[task] / name)
        tasks[task].append({"video": name, "question": rec["question"], "candidates": rec["options"],
                            "answer": rec["answer"]})
        answers.append((f"{task}-{len(tasks[task]) - 1}", LETTERS[rec["answer_index"]]))
    for task, items in tasks.items():
        _json(items, out / "json" / f"{task}.json")
    return answers


def tempcompass(probes: Path, out: Path, n: int = 4) -> dict[str, list[tuple[str, str]]]:
    """All three formats in one folder: multi-choice, yes_no (two rows a video) and caption_matching."""
    mc, yn, cm = [], [], []
    answers: dict[str, list[tuple[str, str]]] = {"multi-choice": [], "yes_no": [], "caption_matching": []}
    for i, rec in enumerate(probe_records(probes, n)):
        vid = f"tc{i}"
        _copy(probes / rec["video"], out / "videos" / f"{vid}.mp4")
        letter = LETTERS[rec["answer_index"]]
        lines = [f"{LETTERS[j]}. {o}" for j, o in enumerate(rec["options"])]
        mc.append({"video_id": vid, "question": "\n".join([rec["question"], *lines]), "answer": lines[rec["answer_index"]],
                   "dim": rec["skill"]})
        answers["multi-choice"].append((f"multi-choice-{vid}-{i}", letter))
        wrong = rec["options"][(rec["answer_index"] + 1) % len(rec["options"])]
        for text, truth in ((rec["answer"], "yes"), (wrong, "no")):
            yn.append({"video_id": vid, "question": f"{rec['question']} Is it {text}?", "answer": truth,
                       "dim": rec["skill"]})
            answers["yes_no"].append((f"yes_no-{vid}-{len(yn) - 1}", truth))
        texts = [rec["answer"], wrong] if i % 2 == 0 else [wrong, rec["answer"]]
        caps = [f"Sentence {LETTERS[j]}: the answer is {t}" for j, t in enumerate(texts)]
        right = i % 2
        cm.append({"video_id": vid, "question": "\n".join(["Which sentence matches the video?", *caps]),
                   "answer": caps[right], "dim": rec["skill"]})
        answers["caption_matching"].append((f"caption_matching-{vid}-{i}", LETTERS[right]))
    _parquet(mc, out / "multi-choice" / "test-00000-of-00001.parquet")
    _parquet(yn, out / "yes_no" / "test-00000-of-00001.parquet")
    _parquet(cm, out / "caption_matching" / "test-00000-of-00001.parquet")
    return answers


MLVU_TASKS = ("1_plotQA", "4_count")


def mlvu(probes: Path, out: Path, n: int = 4) -> list[tuple[str, str]]:
    items: dict[str, list] = {t: [] for t in MLVU_TASKS}
    answers = []
    for i, rec in enumerate(probe_records(probes, n)):
        task = MLVU_TASKS[i % 2]
        _copy(probes / rec["video"], out / "video" / task / f"m{i}.mp4")
        items[task].append({"video": f"m{i}.mp4", "duration": 2.0, "question": rec["question"],
                            "candidates": rec["options"], "answer": rec["answer"], "question_type": task[2:]})
        answers.append((f"{task}-{len(items[task]) - 1}", LETTERS[rec["answer_index"]]))
    for task, rows in items.items():
        _json(rows, out / "json" / f"{task}.json")
    _json([{"video": "x.mp4", "question": "Describe it.", "answer": "a caption"}], out / "json" / "8_sub_scene.json")
    return answers


def longvideobench(probes: Path, out: Path, n: int = 4) -> list[tuple[str, str]]:
    rows, answers = [], []
    for i, rec in enumerate(probe_records(probes, n)):
        _copy(probes / rec["video"], out / "videos" / f"lvb{i}.mp4")
        rows.append({"id": f"lvb-{i}", "video_id": f"lvb{i}", "video_path": f"lvb{i}.mp4", "question": rec["question"],
                     "candidates": rec["options"], "correct_choice": rec["answer_index"],
                     "duration_group": [15, 60][i % 2], "question_category": rec["skill"][:3].upper(),
                     "duration": 2.0, "starting_timestamp_for_subtitles": 0, "subtitle_path": ""})
        answers.append((f"lvb-{i}", LETTERS[rec["answer_index"]]))
    _json(rows, out / "lvb_val.json")
    return answers


def nextqa(probes: Path, out: Path, n: int = 4) -> list[tuple[str, str]]:
    rows, answers = [], []
    for i, rec in enumerate(probe_records(probes, n)):
        video = 4000 + i
        _copy(probes / rec["video"], out / "NExTVideo" / f"{video}.mp4")
        options = _five(rec)
        rows.append({"video": video, "frame_count": 16, "width": 64, "height": 64, "question": rec["question"],
                     "answer": rec["answer_index"], "qid": i, "type": ("CW", "TN", "DC", "TP")[i % 4],
                     **{f"a{j}": o for j, o in enumerate(options)}})
        answers.append((f"{video}-{i}", LETTERS[rec["answer_index"]]))
    _parquet(rows, out / "MC" / "test-00000-of-00001.parquet")
    return answers


def egoschema(probes: Path, out: Path, n: int = 4) -> list[tuple[str, str]]:
    """``n`` questions, of which all but the last have a public answer (the subset)."""
    rows, subset, answers = [], {}, []
    for i, rec in enumerate(probe_records(probes, n)):
        uid = f"q-{i:04d}"
        _copy(probes / rec["video"], out / "videos" / f"{uid}.mp4")
        rows.append({"q_uid": uid, "google_drive_id": "", "question": rec["question"],
                     **{f"option {j}": o for j, o in enumerate(_five(rec))}})
        if i < n - 1:
            subset[uid] = rec["answer_index"]
            answers.append((uid, LETTERS[rec["answer_index"]]))
    _json(rows, out / "questions.json")
    _json(subset, out / "subset_answers.json")
    return answers


BUILDERS = {"videomme": videomme, "mvbench": mvbench, "mlvu": mlvu, "longvideobench": longvideobench,
            "nextqa": nextqa, "egoschema": egoschema}
