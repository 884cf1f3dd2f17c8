"""Write a probe set to a folder: ``generate_probes(out, seed, n, settings)`` (see docs/probes.md).

Sample ``index`` of split ``split`` is drawn from ``np.random.default_rng([seed, split id, index])`` with skill
``settings.skills[index % len(settings.skills)]``, so it does not depend on how many others are made, in which
order, or by how many workers. Videos are written to a temporary name and renamed, so a video that exists is
complete; a rerun of the same command skips them (it re-draws their records, which is cheap) and rewrites the
JSONL files, mixtures and ``probes.json`` at the end, each atomically.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
import yaml

from tempflex.atomic import fsync_dir, write_jsonl_atomic, write_text_atomic
from tempflex.probes.captions import DESCRIBE, caption
from tempflex.probes.format import format_question
from tempflex.probes.skills import SKILLS, ClipSpec, Probe

VERSION = 3  # 2: answers are the options' text; 3: captions
SPLITS = ("train", "val", "test")  # their positions are the split ids that seed the rng
CRF = 12  # x264 quality: low enough that the flat colours survive yuv420p intact


@dataclass(frozen=True)
class ProbeSettings:
    """What every video of a probe set looks like; validated when built."""

    frames: int = 16  # T: frames per video, >= 8 (counting and periodic need 4 frames per event)
    fps: int = 8  # frame rate written into the mp4, 1..60
    size: int = 64  # S: videos are S x S px; a multiple of 16 in 32..512
    distractors: int = 0  # small extra shapes per video (0..6) that never change the answer
    speed: float = 1.0  # scales every motion amplitude, 0.25..1.5 (0.5 = half the distance, harder)
    landmark: float = 0.5  # chance that a camera pan shows a fixed saturated shape, 0..1 (1.0 = always, easier)
    skills: tuple[str, ...] = tuple(SKILLS)  # kept in registry order; sample i gets skills[i % len(skills)]
    split: Mapping[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})

    def __post_init__(self) -> None:
        _check_int("frames", self.frames, 8, 1024)
        _check_int("fps", self.fps, 1, 60)
        _check_int("size", self.size, 32, 512)
        if self.size % 16:
            raise ValueError(f"size must be a multiple of 16 (the patch size), got {self.size}")
        _check_int("distractors", self.distractors, 0, 6)
        if not 0.25 <= self.speed <= 1.5:
            raise ValueError(f"speed must be in [0.25, 1.5], got {self.speed}")
        if not 0 <= self.landmark <= 1:
            raise ValueError(f"landmark must be a chance in [0, 1], got {self.landmark}")
        unknown = [s for s in self.skills if s not in SKILLS]
        if unknown or not self.skills:
            raise ValueError(f"unknown skill {', '.join(map(repr, unknown))}; known: {', '.join(SKILLS)}"
                             if unknown else "give at least one skill")
        object.__setattr__(self, "skills", tuple(s for s in SKILLS if s in self.skills))
        bad = [k for k in self.split if k not in SPLITS]
        if bad or any(not 0 <= v <= 1 for v in self.split.values()) or abs(sum(self.split.values()) - 1) > 1e-6:
            raise ValueError(f"split must give fractions in [0, 1] of {', '.join(SPLITS)} that sum to 1, "
                             f"got {dict(self.split)}")
        object.__setattr__(self, "split", {k: float(self.split[k]) for k in SPLITS if k in self.split})

    def clip(self) -> ClipSpec:
        return ClipSpec(self.frames, self.size, self.distractors, self.speed, self.landmark)

    def counts(self, n: int) -> dict[str, int]:
        """Samples per split for ``n`` in all: the fractions rounded by largest remainder, so they sum to n."""
        exact = {k: n * f for k, f in self.split.items()}
        counts = {k: int(v) for k, v in exact.items()}
        for k in sorted(exact, key=lambda k: counts[k] - exact[k])[: n - sum(counts.values())]:
            counts[k] += 1
        return counts

    def to_dict(self) -> dict:
        return {**asdict(self), "skills": list(self.skills), "split": dict(self.split)}


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class ProbeSummary:
    """What a ``generate_probes`` run did."""

    out: Path
    counts: dict[str, int]  # samples per split
    written: int  # videos encoded by this run
    skipped: int  # videos already complete from an earlier run

    def line(self) -> str:
        splits = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"{self.out}: {splits}; wrote {self.written} videos, {self.skipped} were already there"


def sample_probe(seed: int, split: str, index: int, settings: ProbeSettings) -> tuple[str, Probe]:
    """(skill, probe) of sample ``index`` of ``split``: what ``generate_probes`` writes for it, without writing."""
    skill = settings.skills[index % len(settings.skills)]
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    return skill, SKILLS[skill](rng, settings.clip())


def probe_record(split: str, index: int, skill: str, probe: Probe) -> dict:
    """The LLaVA-format training record of a probe, with its metadata."""
    sample_id = f"{split}-{index:06d}"
    prompt = "<video>\n" + format_question(probe.question, probe.options)
    answer = probe.options[probe.answer]  # the option's text (see tempflex.probes.format)
    return {
        "id": sample_id,
        "video": f"videos/{split}/{sample_id}.mp4",
        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}],
        "skill": skill,
        "temporal": probe.temporal,
        "question": probe.question,
        "options": probe.options,
        "answer": answer,
        "answer_index": probe.answer,
        "caption": caption(skill, probe.params),
        "params": probe.params,
    }


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int = CRF) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 as H.264 yuv420p to ``path``, through a temporary name."""
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        # One thread: the workers are processes. No macroblock tree: its float code gave different bytes for
        # the same frames in about 1 video in 100 (between processes, and sometimes within one); without it the
        # same frames always give the same file (12,000 encodes checked), for ~20% more bytes.
        options = {"crf": str(crf), "threads": "1", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Job:
    out: Path
    seed: int
    split: str
    index: int
    settings: ProbeSettings


def _run_job(job: _Job) -> tuple[dict, bool]:
    """(record, whether the video was written now) for one sample."""
    skill, probe = sample_probe(job.seed, job.split, job.index, job.settings)
    record = probe_record(job.split, job.index, skill, probe)
    path = job.out / record["video"]
    if path.is_file():
        return record, False
    write_mp4(path, probe.frames, job.settings.fps)
    return record, True


def _results(jobs: list[_Job], workers: int) -> Iterator[tuple[dict, bool]]:
    if workers == 1:
        yield from map(_run_job, jobs)
        return
    # fork: workers start at once, without importing torch again (the package imports it)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunk = max(1, min(32, len(jobs) // (8 * workers)))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint) as pool:
        try:
            yield from pool.map(_run_job, jobs, chunksize=chunk)
        except BaseException:  # Ctrl-C, or the caller stopped: drop the queued samples, finish the running ones
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent handles it


def _header(seed: int, n: int, settings: ProbeSettings) -> dict:
    return {"version": VERSION, "seed": seed, "n": n, "settings": settings.to_dict(), "crf": CRF}


def _prepare(out: Path, header: dict) -> None:
    """Make ``out``, or check that it is empty or holds an earlier run of the same command."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    meta = out / "probes.json"
    if meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{meta} is not valid JSON; remove it or use another folder") from None
        diffs = [k for k in header if k != "settings" and old.get(k) != header[k]]
        earlier = {**ProbeSettings().to_dict(), **old.get("settings", {})}  # a knob added later: its default
        diffs += [k for k, v in header["settings"].items() if earlier.get(k) != v]
        if diffs:
            raise ValueError(f"{out} holds probes made with another {', '.join(diffs)}; rerun with the same "
                             "options to resume, or use another folder")
        return
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no probes.json; use an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(meta, json.dumps({**header, "complete": False}, indent=2) + "\n")


def _mixture(split: str) -> str:
    body = yaml.safe_dump({"datasets": [{"name": f"probes_{split}", "path": f"{split}.jsonl", "media_root": "."}]},
                          sort_keys=False)
    return f"# The {split} split of a probe set made by `tempflex probes generate` (docs/probes.md).\n{body}"


def _caption_mixture(split: str) -> str:
    """Captions and questions of ``split``, one of each per video: the alignment mixture of tempflex-tiny."""
    body = yaml.safe_dump({"datasets": [
        {"name": f"probe_captions_{split}", "path": f"{split}_captions.jsonl", "media_root": "."},
        {"name": f"probes_{split}", "path": f"{split}.jsonl", "media_root": "."},
    ]}, sort_keys=False)
    return f"# Captions plus questions of the {split} split (docs/probes.md).\n{body}"


def caption_record(record: dict) -> dict:
    """The captioning conversation of a probe record: "Describe the video." -> its caption."""
    return {"id": record["id"] + "-caption", "video": record["video"], "skill": record["skill"],
            "conversations": [{"from": "human", "value": f"<video>\n{DESCRIBE}"},
                              {"from": "gpt", "value": record["caption"]}]}


def _finish(out: Path, header: dict, records: dict[str, list[dict]]) -> None:
    chance: dict[str, list[float]] = {}
    temporal: dict[str, bool] = {}
    for split, rows in records.items():
        write_jsonl_atomic(out / f"{split}.jsonl", rows)
        write_jsonl_atomic(out / f"{split}_captions.jsonl", (caption_record(r) for r in rows))
        write_text_atomic(out / f"mixture_{split}.yaml", _mixture(split))
        write_text_atomic(out / f"mixture_{split}_captions.yaml", _caption_mixture(split))
        for r in rows:
            chance.setdefault(r["skill"], []).append(1 / len(r["options"]))
            temporal[r["skill"]] = r["temporal"]
    meta = {
        **header,
        "counts": {k: len(v) for k, v in records.items()},
        "skills": header["settings"]["skills"],
        "chance": {k: round(float(np.mean(v)), 4) for k, v in chance.items()},  # accuracy of a uniform guess
        "temporal": temporal,
        "complete": True,
    }
    write_text_atomic(out / "probes.json", json.dumps(meta, indent=2) + "\n")


def generate_probes(
    out: str | Path,
    seed: int,
    n: int,
    settings: ProbeSettings | None = None,
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeSummary:
    """Write ``n`` probes in all (split by ``settings.split``) into ``out``; resumes an interrupted run.

    ``progress(done, total)`` is called after every sample. Raises ``ValueError`` for bad arguments, a file as
    ``out``, or a folder that is not empty and was not made by the same command.
    """
    settings = settings or ProbeSettings()
    _check_int("n", n, 1, 10**8)
    _check_int("seed", seed, 0, 2**63 - 1)
    _check_int("workers", workers, 1, 256)
    out = Path(out)
    header = _header(seed, n, settings)
    _prepare(out, header)
    counts = {k: v for k, v in settings.counts(n).items() if v}
    for split in counts:
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
    jobs = [_Job(out, seed, split, i, settings) for split, k in counts.items() for i in range(k)]
    records: dict[str, list[dict]] = {split: [] for split in counts}
    written = 0
    for done, (record, new) in enumerate(_results(jobs, workers), 1):
        records[record["id"].split("-")[0]].append(record)
        written += new
        if progress is not None:
            progress(done, len(jobs))
    for split in counts:
        fsync_dir(out / "videos" / split)
    _finish(out, header, records)
    return ProbeSummary(out, {k: len(v) for k, v in records.items()}, written, len(jobs) - written)
