"""Training records (docs/data.md, LLaVA format) from the shards: ``OUT/train/captions.jsonl`` and ``vqa.jsonl``.

One caption sample per video (the description, asked with one of a few fixed prompts chosen by a hash of the
id) and one single-turn VQA sample per QA pair (10 per video), so a mixture can weight captions and QA apart.
Video paths are absolute, as in the shards. Files are rewritten whole (temp file + rename) on every export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tempflex.atomic import write_jsonl_atomic
from tempflex.synth.dedup import load_dropped
from tempflex.synth.store import read_jsonl

CAPTION_PROMPTS = (
    "Describe this video in detail.",
    "Give a detailed description of what happens in the video.",
    "What happens in this video? Describe it in detail.",
    "Provide a detailed account of the events, people and objects in this video.",
)


def caption_record(shard_record: dict[str, Any]) -> dict[str, Any]:
    video_id = str(shard_record["video_id"])
    prompt = CAPTION_PROMPTS[int(hashlib.sha1(video_id.encode()).hexdigest(), 16) % len(CAPTION_PROMPTS)]
    return {
        "id": f"{video_id}-caption",
        "video": shard_record["video"],
        "source": shard_record["source"],
        "conversations": [
            {"from": "human", "value": f"<video>\n{prompt}"},
            {"from": "gpt", "value": shard_record["description"]},
        ],
    }


def vqa_records(shard_record: dict[str, Any]) -> list[dict[str, Any]]:
    video_id = str(shard_record["video_id"])
    return [
        {
            "id": f"{video_id}-qa{i}",
            "video": shard_record["video"],
            "source": shard_record["source"],
            "dimension": pair["dimension"],
            "kind": pair["kind"],
            "conversations": [
                {"from": "human", "value": f"<video>\n{pair['question']}"},
                {"from": "gpt", "value": pair["answer"]},
            ],
        }
        for i, pair in enumerate(shard_record["qa"])
    ]


def export_training(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``OUT/train/captions.jsonl`` and ``OUT/train/vqa.jsonl`` from every shard; returns their paths.

    What ``OUT/dedup.json`` drops (``tempflex synth-report --dedup``: near-duplicate videos, repeated questions)
    is left out; the shards themselves are never changed.
    """
    out_dir = Path(out_dir)
    dropped_videos, dropped_questions = load_dropped(out_dir)
    records = [r for shard in sorted((out_dir / "shards").glob("part-*.jsonl")) for r in read_jsonl(shard)
               if str(r["video_id"]) not in dropped_videos]
    train = out_dir / "train"
    train.mkdir(parents=True, exist_ok=True)
    captions, vqa = train / "captions.jsonl", train / "vqa.jsonl"
    write_jsonl_atomic(captions, [caption_record(r) for r in records])
    samples = [
        sample for r in records for i, sample in enumerate(vqa_records(r))
        if (str(r["video_id"]), i) not in dropped_questions
    ]
    write_jsonl_atomic(vqa, samples)
    return captions, vqa
