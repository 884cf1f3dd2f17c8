"""`tempflex.probes`: the files and records written, determinism, and for every skill that the answer can be read
off the decoded frames (H.264 through `tempflex.video.load_video`), plus the CLI and its errors.

Shapes: T frames, S x S px; decoded clips are (T, S, S, 3).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tempflex.cli import app
from tempflex.probes import SKILLS, ProbeSettings, generate_probes, sample_probe
from tempflex.probes.generate import write_mp4
from tempflex.probes.render import BACKGROUND, COLOURS, SHAPES, shape_mask
from tempflex.train.records import load_mixture, parse_record, read_raw
from tempflex.video import load_video

runner = CliRunner()
SEED = 3


@pytest.fixture(scope="module")
def probe_set(tmp_path_factory) -> Path:
    """40 probes (4 per skill) over train/val/test, by two worker processes."""
    out = tmp_path_factory.mktemp("probes")
    generate_probes(out, SEED, 40, ProbeSettings(), workers=2)
    return out


def _records(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def _decode(out: Path, record: dict) -> np.ndarray:
    return load_video(out / record["video"]).frames.numpy()


# ---------------------------------------------------------------------------------------------- layout


def test_layout_records_and_mixtures(probe_set):
    meta = json.loads((probe_set / "probes.json").read_text())
    assert meta["version"] == 3 and meta["seed"] == SEED and meta["complete"]
    assert meta["counts"] == {"train": 32, "val": 4, "test": 4}
    assert meta["settings"] == ProbeSettings().to_dict() and meta["skills"] == list(SKILLS)
    assert meta["chance"]["object_direction"] == 0.25 and meta["chance"]["speed_change"] == pytest.approx(1 / 3, 1e-3)
    assert meta["temporal"]["appearance"] is False and meta["temporal"]["counting"] is True
    for split, count in meta["counts"].items():
        records = _records(probe_set, split)
        assert [r["id"] for r in records] == [f"{split}-{i:06d}" for i in range(count)]
        for i, r in enumerate(records):
            assert r["skill"] == list(SKILLS)[i % len(SKILLS)]
            assert (probe_set / r["video"]).is_file() and r["video"] == f"videos/{split}/{r['id']}.mp4"
            assert r["answer"] == r["options"][r["answer_index"]] == r["conversations"][1]["value"]
            prompt = r["conversations"][0]["value"]
            assert prompt == "<video>\n" + r["question"] + "\nOptions: " + ", ".join(r["options"]) + ".\nAnswer with one of the options."
            assert prompt.endswith("\nAnswer with one of the options.") and len(set(r["options"])) == len(r["options"])
        mixture = load_mixture(probe_set / f"mixture_{split}.yaml")
        spec = mixture.datasets[0]
        assert spec.name == f"probes_{split}" and spec.media_root == probe_set.resolve()
        parsed = [parse_record(raw, spec.media_root, spec.name, n) for n, raw in read_raw(spec.path)]
        assert len(parsed) == count and all(p.videos[0].is_file() for p in parsed)
    assert not list(probe_set.rglob("*.tmp"))
    video = load_video(probe_set / "videos/test/test-000000.mp4")
    assert video.frames.shape == (16, 64, 64, 3) and video.fps == pytest.approx(8)


@pytest.mark.parametrize(
    ("n", "split", "expected"),
    [
        (40, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 32, "val": 4, "test": 4}),
        (7, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 5, "val": 1, "test": 1}),
        (1, {"train": 0.8, "val": 0.1, "test": 0.1}, {"train": 1, "val": 0, "test": 0}),
        (5, {"test": 1.0}, {"test": 5}),
        (9, {"train": 0.5, "test": 0.5}, {"train": 5, "test": 4}),
    ],
)
def test_split_counts_sum_to_n(n, split, expected):
    assert ProbeSettings(split=split).counts(n) == expected


def test_same_seed_same_probes_whatever_n_and_workers(probe_set, tmp_path):
    """A sample depends only on (seed, split, index): a smaller run in one process repeats the bigger one."""
    summary = generate_probes(tmp_path, SEED, 10, ProbeSettings(), workers=1)
    assert summary.counts == {"train": 8, "val": 1, "test": 1} and summary.written == 10
    for split, count in summary.counts.items():
        assert _records(tmp_path, split) == _records(probe_set, split)[:count]
    for record in _records(tmp_path, "train")[:4] + _records(tmp_path, "val"):
        a, b = tmp_path / record["video"], probe_set / record["video"]
        assert a.read_bytes() == b.read_bytes()
        assert np.array_equal(_decode(tmp_path, record), _decode(probe_set, record))


@pytest.mark.parametrize("skill", list(SKILLS))
def test_other_seed_or_index_other_probe(skill):
    settings = ProbeSettings(skills=(skill,))
    a = sample_probe(0, "train", 0, settings)[1]
    for b in (sample_probe(1, "train", 0, settings)[1], sample_probe(0, "test", 0, settings)[1],
              sample_probe(0, "train", 1, settings)[1]):
        assert not np.array_equal(a.frames, b.frames) or a.params != b.params


@pytest.mark.parametrize("skill", list(SKILLS))
def test_distractors_keep_objects_and_question(skill):
    plain = sample_probe(5, "train", 0, ProbeSettings(skills=(skill,)))[1]
    busy = sample_probe(5, "train", 0, ProbeSettings(skills=(skill,), distractors=3))[1]
    assert (busy.question, busy.options, busy.answer, busy.params) == (
        plain.question, plain.options, plain.answer, plain.params)
    assert not np.array_equal(busy.frames, plain.frames)


def test_landmark_chance_changes_only_the_landmark():
    """--landmark sets how often a camera pan shows its landmark; one draw whatever the chance, so a pan that had a
    landmark at the default chance is the same video at chance 1, and at chance 0 no pan has one."""
    def pans(chance: float) -> list:
        settings = ProbeSettings(skills=("camera_direction",), landmark=chance)
        return [sample_probe(SEED, "train", i, settings)[1] for i in range(12)]

    default, always, never = pans(0.5), pans(1.0), pans(0.0)
    assert all(p.params["landmark"] for p in always) and not any(p.params["landmark"] for p in never)
    assert 0 < sum(p.params["landmark"] for p in default) < 12
    for d, a, n in zip(default, always, never):
        same = a if d.params["landmark"] else n
        assert np.array_equal(d.frames, same.frames) and (d.question, d.options, d.answer) == (
            same.question, same.options, same.answer)


def test_resume_of_a_set_made_before_a_knob_existed(tmp_path):
    settings = ProbeSettings(skills=("appearance",), split={"train": 1.0})
    generate_probes(tmp_path, SEED, 2, settings)
    meta = json.loads((tmp_path / "probes.json").read_text())
    del meta["settings"]["landmark"]  # as written before --landmark
    (tmp_path / "probes.json").write_text(json.dumps(meta))
    assert generate_probes(tmp_path, SEED, 2, settings).skipped == 2
    with pytest.raises(ValueError, match="another landmark"):
        generate_probes(tmp_path, SEED, 2, ProbeSettings(skills=("appearance",), split={"train": 1.0}, landmark=1.0))


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_after_interruption(tmp_path, workers):
    settings = ProbeSettings(skills=("counting", "periodic"), split={"train": 1.0})
    calls = []

    def stop_after_three(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_probes(tmp_path, 0, 24, settings, workers=workers, progress=stop_after_three)
    done = len(list((tmp_path / "videos/train").glob("*.mp4")))  # workers may have finished a few more
    assert (done == 3 if workers == 1 else 3 <= done < 24) and not (tmp_path / "train.jsonl").exists()
    (tmp_path / "videos/train/train-000023.mp4.tmp").write_bytes(b"half a video")  # as left by a kill
    summary = generate_probes(tmp_path, 0, 24, settings)
    assert (summary.written, summary.skipped) == (24 - done, done)
    assert len(_records(tmp_path, "train")) == 24 and not list(tmp_path.rglob("*.tmp"))
    assert json.loads((tmp_path / "probes.json").read_text())["complete"]


# ------------------------------------------------------------------------- answers match the decoded frames


def _mask(frames: np.ndarray, colour: str, tol: int = 45) -> np.ndarray:
    """(T, S, S) where the decoded pixels are near ``colour``."""
    return np.abs(frames.astype(int) - np.array(COLOURS[colour])).max(-1) < tol


def _centroid(mask: np.ndarray) -> np.ndarray:
    """(x, y) of a (S, S) mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def _on(mask: np.ndarray, min_px: int = 12) -> np.ndarray:
    """(T,) frames where the colour covers at least ``min_px`` px."""
    return mask.reshape(len(mask), -1).sum(1) >= min_px


def _runs(on: np.ndarray) -> int:
    return int(on[0]) + int(np.sum(on[1:] & ~on[:-1]))


def _direction(delta: np.ndarray) -> str:
    dx, dy = delta
    return ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")


def _motion(frames: np.ndarray, colours: list[str], a: int, b: int) -> np.ndarray:
    mask = np.any([_mask(frames, c) for c in colours], axis=0)
    return _centroid(mask[b]) - _centroid(mask[a])


def _read_direction(f, p, S):
    delta = _motion(f, [p["colour"]], 0, -1)
    stated = np.subtract(p["end"], p["start"])
    assert np.abs(delta - stated).max() < 2  # px: the centroid moves as far as the record says
    return _direction(delta)


def _read_camera(f, p, S):
    """The image shift from the first to the last frame that matches best; the camera moves the other way."""
    first, last = f[0].astype(int), f[-1].astype(int)
    best = None
    for k in range(-S * 4 // 5, S * 4 // 5 + 1):
        for axis in (0, 1):
            src = [slice(max(0, -k), S - max(0, k)), slice(None)]
            dst = [slice(max(0, k), S + min(0, k)), slice(None)]
            if axis == 1:
                src, dst = src[::-1], dst[::-1]
            err = np.abs(last[tuple(dst)] - first[tuple(src)]).mean()
            if best is None or err < best[0]:
                best = (err, k, axis)
    err, k, axis = best
    assert abs(abs(k) - p["pan_px"]) <= 1 and err < 10
    return {(1, 1): "left", (1, -1): "right", (0, 1): "up", (0, -1): "down"}[(axis, int(np.sign(k)))]


def _read_speed(f, p, S):
    T = len(f)
    first, second = (np.abs(_motion(f, [p["colour"]], a, b)).max() for a, b in ((0, T // 2 - 1), (T // 2, T - 1)))
    ratio = second / first
    assert not 0.71 <= ratio <= 0.8 and not 1.25 <= ratio <= 1.4, ratio  # clear either way
    return "faster" if ratio > 1.4 else "slower" if ratio < 0.71 else "constant"


def _read_order(f, p, S):
    onsets = {c: int(np.argmax(_on(_mask(f, c)))) for c in p["order"]}
    assert not _on(_mask(f, p["absent"])).any() and len(set(onsets.values())) == 3
    return sorted(onsets, key=onsets.get)[0 if p["ask"] == "first" else -1]


def _read_count(f, p, S):
    return str(_runs(_on(_mask(f, p["colour"]))))


def _read_attribute(f, p, S):
    if p["kind"] == "colour":
        first, last = (max(p["options"], key=lambda c: _mask(f, c)[t].sum()) for t in (0, -1))
        assert first == p["from"] != last  # the start colour is the distractor option
        return last
    area = _mask(f, p["colour"]).reshape(len(f), -1).sum(1)
    ratio = area[-1] / area[0]
    return "bigger" if ratio > 3 else "smaller" if ratio < 1 / 3 else "unchanged"


def _read_periodic(f, p, S):
    mask = _mask(f, p["colour"])
    if p["kind"] == "blink":
        return str(_runs(_on(mask)))
    a = np.array([np.abs(_centroid(m) - _centroid(mask[0])).max() for m in mask])  # (T,) distance from start
    peaks = [t for t in range(1, len(a) - 1) if a[t] > 0.6 * a.max() and a[t] >= a[t - 1] and a[t] > a[t + 1]]
    return str(len(peaks))


def _read_before_after(f, p, S):
    turn, colours = p["turn_frame"], [p["colour"], p.get("to", p["colour"])]
    border = f[:, :2].reshape(len(f), -1).mean(1)  # (T,) brightness of the top rows
    flashes = sorted(int(t) for t in np.nonzero(border > 200)[0])
    assert flashes == ([turn, turn + 1] if p["event"] == "flash" else [])
    if p["event"] == "colour":
        assert _on(_mask(f, p["colour"]))[: turn + 1].all() and _on(_mask(f, p["to"]))[turn + 1:].all()
    before, after = _motion(f, colours, 0, turn), _motion(f, colours, turn + 1, len(f) - 1)
    return _direction(before if p["ask"] == "before" else after)


def _read_shape(f, p, S):
    """The shape whose ideal mask at the drawn centre and size overlaps the decoded one best."""
    mask = _mask(f, p["colour"])[0]
    dy, dx = np.ogrid[:S, :S]

    def iou(shape: str) -> float:
        ideal = shape_mask(shape, dx - p["at"][0], dy - p["at"][1], p["size"] / 2)
        return (ideal & mask).sum() / (ideal | mask).sum()

    return max(p["options"], key=iou)


def _read_relation(f, p, S):
    (c1, _, _), (c2, _, _) = p["subject"], p["reference"]
    delta = _centroid(_mask(f, c1)[0]) - _centroid(_mask(f, c2)[0])
    return {"left": "left of", "right": "right of", "up": "above", "down": "below"}[_direction(delta)]


READERS = {
    "object_direction": _read_direction,
    "camera_direction": _read_camera,
    "speed_change": _read_speed,
    "event_order": _read_order,
    "counting": _read_count,
    "attribute_change": _read_attribute,
    "periodic": _read_periodic,
    "before_after": _read_before_after,
    "appearance": _read_shape,
    "spatial_relation": _read_relation,
}


def test_every_skill_has_a_reader():
    assert set(READERS) == set(SKILLS)


@pytest.mark.parametrize("skill", list(SKILLS))
def test_answer_is_what_the_decoded_video_shows(skill, tmp_path):
    """Encode, decode with the project's decoder, read the answer off the pixels, compare with the record."""
    answers = set()
    for i, distractors in enumerate([0] * 6 + [2] * 3):
        settings = ProbeSettings(skills=(skill,), distractors=distractors)
        _, probe = sample_probe(11, "val", i, settings)
        write_mp4(tmp_path / f"{i}.mp4", probe.frames, settings.fps)
        frames = load_video(tmp_path / f"{i}.mp4").frames.numpy()  # (T, S, S, 3)
        assert frames.shape == probe.frames.shape
        params = {**probe.params, "options": probe.options}
        assert READERS[skill](frames, params, settings.size) == probe.options[probe.answer], (i, probe.params)
        answers.add(probe.answer)
    assert len(answers) > 1  # the options are shuffled


@pytest.mark.parametrize("skill", list(SKILLS))
@pytest.mark.parametrize(("frames", "size", "speed"), [(8, 32, 0.5), (16, 32, 1.5), (24, 128, 1.0)])
def test_extreme_settings_keep_the_rules(skill, frames, size, speed):
    """Short, small, slow or fast clips: objects stay inside the frame, flashes and gaps last >= 2 frames."""
    settings = ProbeSettings(skills=(skill,), frames=frames, size=size, speed=speed)
    for i in range(8):
        _, probe = sample_probe(0, "train", i, settings)
        assert probe.frames.shape == (frames, size, size, 3) and 0 <= probe.answer < len(probe.options)
        drawn = np.abs(probe.frames.astype(int) - BACKGROUND).max(-1) > 0  # (T, S, S)
        if skill == "before_after" and probe.params["event"] == "flash":
            drawn[[probe.params["turn_frame"], probe.params["turn_frame"] + 1]] = False
        if skill != "camera_direction":
            assert not (drawn[:, 0].any() or drawn[:, -1].any() or drawn[:, :, 0].any() or drawn[:, :, -1].any())
        if skill == "counting":
            on = _on(np.abs(probe.frames.astype(int) - COLOURS[probe.params["colour"]]).max(-1) == 0, 1)
            spans = np.diff(np.flatnonzero(np.diff(np.r_[0, on.astype(int), 0])))  # on, off, on, ... runs
            assert _runs(on) == probe.params["count"] and spans.min() >= 2


def test_shapes_are_told_apart():
    """Every pair of shapes differs in enough pixels at the smallest object size."""
    dy, dx = np.ogrid[-8:9, -8:9]
    masks = {s: shape_mask(s, dx, dy, 8) for s in SHAPES}
    assert min((masks[a] ^ masks[b]).sum() for a in SHAPES for b in SHAPES if a < b) >= 20


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_generate_and_resume(tmp_path):
    args = ["probes", "generate", "--out", str(tmp_path / "p"), "--n", "6", "--seed", "2",
            "--skills", "counting,appearance", "--split", "train=0.5,test=0.5", "--workers", "2"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "train 3, test 3; wrote 6 videos" in first.stdout
    meta = json.loads((tmp_path / "p/probes.json").read_text())
    assert meta["skills"] == ["counting", "appearance"] and meta["seed"] == 2
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "wrote 0 videos, 6 were already there" in again.stdout


def test_cli_defaults_are_the_settings_defaults(tmp_path):
    result = runner.invoke(app, ["probes", "generate", "--out", str(tmp_path), "--n", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "probes.json").read_text())["settings"] == ProbeSettings().to_dict()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "n must be"),
        (["--n", "3", "--skills", "object_direction,juggling"], "unknown skill 'juggling'"),
        (["--n", "3", "--split", "train=0.5,val"], "--split takes NAME=FRACTION"),
        (["--n", "3", "--split", "train=0.5,val=0.2"], "sum to 1"),
        (["--n", "3", "--size", "50"], "multiple of 16"),
        (["--n", "3", "--frames", "4"], "frames must be"),
        (["--n", "3", "--speed", "3"], "speed must be"),
        (["--n", "3", "--landmark", "1.5"], "landmark must be"),
        (["--n", "3", "--seed", "-1"], "seed must be"),
        (["--n", "3", "--workers", "0"], "workers must be"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(tmp_path, extra, message):
    result = runner.invoke(app, ["probes", "generate", "--out", str(tmp_path / "p"), *extra])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr and not (tmp_path / "p").exists()


def test_cli_out_is_a_file_or_holds_other_probes(tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("x")
    result = runner.invoke(app, ["probes", "generate", "--out", str(file), "--n", "2"])
    assert result.exit_code == 2 and result.stderr.strip() == f"error: --out {file} is a file, not a folder"
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    result = runner.invoke(app, ["probes", "generate", "--out", str(tmp_path / "busy"), "--n", "2"])
    assert result.exit_code == 2 and "holds no probes.json" in result.stderr
    ok = runner.invoke(app, ["probes", "generate", "--out", str(tmp_path / "p"), "--n", "2", "--seed", "1"])
    assert ok.exit_code == 0, ok.output
    other = runner.invoke(app, ["probes", "generate", "--out", str(tmp_path / "p"), "--n", "2", "--seed", "2",
                                "--size", "32"])
    assert other.exit_code == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "another seed, size" in other.stderr


def test_captions_golden_and_they_name_the_answer(probe_set):
    from tempflex.probes.captions import caption

    assert caption("object_direction", {"colour": "orange", "shape": "cross", "direction": "up"}) == \
        "An orange cross moves up."
    assert caption("before_after", {"colour": "red", "shape": "square", "before": "left", "after": "down",
                                    "event": "colour", "to": "blue"}) == \
        "A red square moves left, then it turns blue and it moves down."
    assert caption("counting", {"colour": "cyan", "shape": "circle", "count": 1, "decoy_flashes": 2,
                                "decoy_colour": "white"}) == "A cyan circle appears 1 time, and a white shape 2 times."
    for split in ("train", "val", "test"):
        records = [json.loads(line) for line in (probe_set / f"{split}.jsonl").read_text().splitlines()]
        captions = [json.loads(line) for line in (probe_set / f"{split}_captions.jsonl").read_text().splitlines()]
        assert [c["video"] for c in captions] == [r["video"] for r in records]
        for r, c in zip(records, captions):
            assert c["conversations"][1]["value"] == r["caption"]
            if r["skill"] in ("object_direction", "camera_direction", "appearance", "counting", "periodic"):
                assert f" {r['answer']}" in r["caption"], (r["answer"], r["caption"])
