"""tempflex synth against a real loopback HTTP server (tests/synth_server.py) with the real ``openai`` client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from synth_server import Raw, Reply, ScriptedServer, Status, valid_answer

from tempflex.synth.client import ApiError, RetryPolicy, make_client
from tempflex.synth.export import export_training
from tempflex.synth.manifest import ManifestError, load_manifest, path_id
from tempflex.synth.pipeline import Runner, Summary, SynthOptions, plan
from tempflex.synth.schema import AnswerError, parse_answer
from tempflex.synth.store import Store, read_jsonl
from tempflex.train.records import parse_record

ROOT = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_elapsed=30)


def _write_video(path: Path, seconds: int, fps: int = 4) -> Path:
    """A tiny moving-gradient clip made with PyAV (64x48)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            pixels = np.zeros((48, 64, 3), np.uint8)  # (H, W, 3)
            pixels[:, :, 0] = (np.arange(64) * 4 + i * 8) % 256
            pixels[:, :, 1] = i * 10 % 256
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth_videos")
    broken = root / "broken.mp4"
    broken.write_bytes(b"not a video")
    return {
        "short": _write_video(root / "short.mp4", 3),
        "long": _write_video(root / "long.mp4", 11),
        "broken": broken,
    }


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(
    server: ScriptedServer, manifest: Path, out: Path, timeout: float = 30.0, **options: object
) -> Summary:
    store = Store(out, shard_size=3)
    opts = SynthOptions(**{"concurrency": 4, **options})
    summary = Summary()
    todo = plan(load_manifest(manifest), store, opts, summary)
    client = make_client(server.base_url, "test-key", "test-model", timeout=timeout, policy=FAST)
    Runner(client, store, opts).run(todo, summary)
    export_training(out)
    return summary


def _outputs(out: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    accepted = [r for p in sorted((out / "shards").glob("*.jsonl")) for r in read_jsonl(p)]
    rejected = read_jsonl(out / "rejected.jsonl")
    ids = [r["video_id"] for r in accepted + rejected]
    assert len(ids) == len(set(ids)), "a video was written twice"
    return {r["video_id"]: r for r in accepted}, {r["video_id"]: r for r in rejected}


SCRIPT = {
    "vid_valid": [],
    "vid_fenced": [Reply(valid_answer("f", fenced=True))],
    "vid_fixed": [Reply("{not json"), Reply(valid_answer("fixed"))],
    "vid_stillbad": [Reply("{not json"), Reply("still not json")],
    "vid_missing": [Reply(valid_answer("m", pairs=4)), Reply(valid_answer("m", pairs=3))],
    "vid_missfix": [Reply(valid_answer("m", pairs=4)), Reply(valid_answer("mf"))],
    "vid_ratelimit": [Status(429, {"Retry-After": "1"}), Reply(valid_answer("r"))],
    "vid_servererr": [Status(500), Status(503), Reply(valid_answer("s"))],
    "vid_slow": [Reply(valid_answer("slow"), delay=2.0), Reply(valid_answer("slow"))],
    "vid_badreq": [Status(400)],
    "vid_dimension": [
        Reply(valid_answer("d").replace("Temporal Reasoning", "Vibes")),
        Reply(valid_answer("d")),
    ],
}


@pytest.fixture(scope="module")
def scripted_run(videos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("synth_scripted")
    rows = [{"video": str(videos["short"]), "id": key, "title": key, "source": "s1"} for key in SCRIPT]
    rows.append({"video": str(videos["long"]), "id": "vid_long", "title": "vid_long", "asr": "hello"})
    rows.append({"video": str(videos["broken"]), "id": "vid_broken", "title": "vid_broken"})
    manifest = _manifest(root / "manifest.jsonl", rows)
    with ScriptedServer(SCRIPT) as server:
        summary = _run(server, manifest, root / "out", timeout=0.5)
    return server, summary, root / "out", manifest


def test_scripted_cases_end_as_documented(scripted_run: tuple) -> None:
    _, summary, out, _ = scripted_run
    accepted, rejected = _outputs(out)
    assert set(accepted) == {"vid_valid", "vid_fenced", "vid_fixed", "vid_missfix", "vid_ratelimit", "vid_servererr", "vid_slow", "vid_dimension", "vid_long"}  # fmt: skip
    assert set(rejected) == {"vid_stillbad", "vid_missing", "vid_badreq", "vid_broken"}
    assert (summary.accepted, summary.rejected, summary.skipped) == (9, 4, 0)
    assert summary.prompt_tokens == 100 * 16  # requests answered 200 in time
    for record in accepted.values():
        assert [q["kind"] for q in record["qa"]] == ["vision"] * 5 + ["vision_text"] * 5
        assert all(q["question"] and q["answer"] for q in record["qa"]) and record["model"] == "test-model"
    assert accepted["vid_fixed"]["description"] == "A description of fixed."
    assert accepted["vid_valid"]["qa"][1]["dimension"] == "Scene Description"  # case-insensitive, canonical
    assert accepted["vid_valid"]["source"] == "s1" and accepted["vid_long"]["source"] == "default"
    assert accepted["vid_fixed"]["usage"] == {"prompt_tokens": 200, "completion_tokens": 20}
    assert rejected["vid_stillbad"]["reason"].startswith("invalid answer after repair: invalid JSON")
    assert rejected["vid_stillbad"]["raw"] == "still not json"
    assert "vision_qa" in rejected["vid_missing"]["reason"] and rejected["vid_missing"]["raw"]
    assert (
        rejected["vid_badreq"]["reason"].startswith("api: HTTP 400") and rejected["vid_badreq"]["raw"] is None
    )
    assert rejected["vid_broken"]["reason"].startswith("video:")


def test_retries_and_requests(scripted_run: tuple, videos: dict[str, Path]) -> None:
    server = scripted_run[0]
    counts = {key: len(server.for_key(key)) for key in SCRIPT}
    assert counts == {"vid_valid": 1, "vid_fenced": 1, "vid_fixed": 2, "vid_stillbad": 2, "vid_missing": 2, "vid_missfix": 2, "vid_ratelimit": 2, "vid_servererr": 3, "vid_slow": 2, "vid_badreq": 1, "vid_dimension": 2}  # fmt: skip
    first, second = server.for_key("vid_ratelimit")
    assert second.time - first.time >= 0.95  # Retry-After: 1 honoured
    assert not server.for_key("vid_broken")
    assert [seen.image_parts for seen in server.for_key("vid_long")] == [
        2
    ]  # 11 s at 1 fps: 11 frames, 2 grids
    assert server.for_key("vid_valid")[0].image_parts == 1
    repair = server.for_key("vid_fixed")[1].body["messages"]
    assert (
        repair[-2] == {"role": "assistant", "content": "{not json"}
        and "invalid JSON" in repair[-1]["content"]
    )
    text = server.for_key("vid_long")[0].body["messages"][1]["content"][0]["text"]
    assert (
        "ASR text: hello" in text
        and "Stitched image 1: 9 frames, 0.5 s to 8.5 s" in text
        and "Stitched image 2: 2 frames" in text
    )
    assert "Camera Movement Direction" in server.requests[0].body["messages"][0]["content"]


def test_export_is_valid_training_data(scripted_run: tuple) -> None:
    out = scripted_run[2]
    captions = read_jsonl(out / "train" / "captions.jsonl")
    vqa = read_jsonl(out / "train" / "vqa.jsonl")
    assert len(captions) == 9 and len(vqa) == 90
    for i, raw in enumerate(captions + vqa):
        record = parse_record(raw, out, "synth", i)
        assert len(record.videos) == 1 and Path(record.videos[0]).is_file()


def test_rerun_skips_done_and_retries_rejections(scripted_run: tuple, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(scripted_run[2], out)
    with ScriptedServer() as server:
        summary = _run(server, scripted_run[3], out)
        assert server.requests == [] and summary.skipped == 13
        summary = _run(server, scripted_run[3], out, retry_rejected=True)
        assert sorted(s.key for s in server.requests) == ["vid_badreq", "vid_missing", "vid_stillbad"]
    accepted, rejected = _outputs(out)
    assert set(rejected) == {"vid_broken"} and len(accepted) == 12 and summary.accepted == 3


def test_fatal_and_unreachable_errors(tmp_path: Path, videos: dict[str, Path]) -> None:
    with ScriptedServer({"vid_a": [Status(401)]}) as server:
        client = make_client(server.base_url, "k", "m", timeout=5, policy=FAST)
        with pytest.raises(ApiError) as info:
            client.complete([{"role": "user", "content": [{"type": "text", "text": "vid_a"}]}])
        assert info.value.fatal and len(server.requests) == 1
    manifest = _manifest(tmp_path / "m.jsonl", [{"video": str(videos["short"])}])
    env = {**os.environ, "SYNTH_KEY": "x"}
    base = [sys.executable, "-m", "tempflex", "synth", "--manifest", str(manifest), "--out", str(tmp_path / "o"), "--model", "m", "--api-key-env", "SYNTH_KEY"]  # fmt: skip
    result = subprocess.run(check=False, args=[*base, "--base-url", "http://127.0.0.1:9/v1", "--max-attempts", "1"], capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        "error: cannot connect"
    )
    result = subprocess.run(check=False, args=[*base[:-1], "NO_SUCH_KEY_VAR", "--base-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip() == "error: no API key: set the environment variable NO_SUCH_KEY_VAR (any value for a local server)"  # fmt: skip


def test_manifest_validation(tmp_path: Path, videos: dict[str, Path]) -> None:
    good = _manifest(
        tmp_path / "a.jsonl", [{"video": "v.mp4", "activities": "run; jump"}, {"video": "w.mp4", "id": "w"}]
    )
    items = load_manifest(good)
    assert items[0].id == path_id(str((tmp_path / "v.mp4").resolve())) and items[0].activities == (
        "run",
        "jump",
    )
    assert load_manifest(good)[0].id == items[0].id
    dup = _manifest(tmp_path / "b.jsonl", [{"video": "v.mp4", "id": "x"}, {"video": "w.mp4", "id": "x"}])
    with pytest.raises(ManifestError, match=r"line 2: duplicate id 'x' \(first on line 1\)"):
        load_manifest(dup)
    with pytest.raises(ManifestError, match=r"line 1: video: Field required"):
        load_manifest(_manifest(tmp_path / "c.jsonl", [{"title": "no video"}]))
    with pytest.raises(ManifestError, match=r"line 1: colour: Extra inputs are not permitted"):
        load_manifest(_manifest(tmp_path / "d.jsonl", [{"video": "v.mp4", "colour": 1}]))
    csv_file = tmp_path / "e.csv"
    csv_file.write_text('video,id,props,source\nv.mp4,a,"cup;bag",web\nw.mp4,,,\n')
    items = load_manifest(csv_file)
    assert items[0].props == ("cup", "bag") and items[0].source == "web" and items[1].source == "default"


def test_parse_answer_rules() -> None:
    assert parse_answer(valid_answer(fenced=True)).description == "A description of clip."
    for bad, message in [("", "empty"), ("[1]", "JSON object"), (valid_answer(pairs=6), "vision_qa"), (valid_answer().replace('"answer": "clip v answer 0."', '"answer": " "'), "vision_qa.0.answer")]:  # fmt: skip
        with pytest.raises(AnswerError, match=message):
            parse_answer(bad)


def test_sigkill_mid_run_then_rerun(tmp_path: Path, videos: dict[str, Path]) -> None:
    ids = [f"vid_k{i}" for i in range(8)]
    manifest = _manifest(
        tmp_path / "m.jsonl", [{"video": str(videos["short"]), "id": i, "title": i} for i in ids]
    )
    out = tmp_path / "out"
    with ScriptedServer(default=Reply(valid_answer("k"), delay=0.3)) as server:
        cmd = [sys.executable, "-m", "tempflex", "synth", "--manifest", str(manifest), "--out", str(out), "--base-url", server.base_url, "--model", "m", "--concurrency", "2", "--shard-size", "3"]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": "x"}
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180  # the child imports torch first: slow on a loaded machine
        while time.monotonic() < deadline and not any(p.stat().st_size for p in out.glob("shards/*.jsonl")):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_first = {r["video_id"] for p in out.glob("shards/*.jsonl") for r in read_jsonl(p)}
        assert 1 <= len(done_first) < len(ids)
        with open(max(out.glob("shards/*.jsonl")), "ab") as handle:
            handle.write(b'{"video_id": "vid_k7", "video": "torn')  # what a kill inside a write leaves
        server.requests.clear()
        result = subprocess.run(check=False, args=cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert {s.key for s in server.requests} == set(ids) - done_first  # done videos are not asked again
    accepted, rejected = _outputs(out)
    assert sorted(accepted) == ids and not rejected
    assert result.stdout.strip().splitlines()[-1].startswith(f"accepted {len(ids) - len(done_first)}, rejected 0, skipped {len(done_first)}")  # fmt: skip
    assert len(read_jsonl(out / "train" / "captions.jsonl")) == len(ids)


def test_a_200_reply_that_is_not_a_completion_is_retried_then_rejected() -> None:
    """Cut-off JSON, an empty body and an HTML page, each with HTTP 200, are retried like a 5xx; a call that only
    ever gets such replies fails with the reason (not fatal: the run rejects that video and goes on)."""
    whole = b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", '
    garbage = [Raw(whole[:40]), Raw(b""), Raw(b"<html><body>502 Bad Gateway</body></html>", "text/html")]
    with ScriptedServer({"flaky": [*garbage, Reply("fine")], "broken": garbage * 2}) as server:
        client = make_client(server.base_url, "k", "m", timeout=5, policy=FAST)
        assert client.complete([{"role": "user", "content": "flaky"}]).text == "fine"
        assert len(server.for_key("flaky")) == 4
        with pytest.raises(ApiError, match="not (valid JSON|a chat completion).*gave up after 4 attempts") as info:
            client.complete([{"role": "user", "content": "broken"}])
        assert not info.value.fatal

