"""Sharded synthesis and `tempflex synth-merge`, against the loopback scripted server (tests/synth_server.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
from synth_server import Reply, ScriptedServer, valid_answer
from test_synth import _write_video
from typer.testing import CliRunner

from tempflex.cli import app
from tempflex.synth.client import RetryPolicy, make_client
from tempflex.synth.manifest import load_manifest
from tempflex.synth.merge import merge_outputs
from tempflex.synth.pipeline import SynthOptions
from tempflex.synth.run import run_synthesis
from tempflex.synth.sharding import ShardSpec, shard_of
from tempflex.synth.store import read_jsonl

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_elapsed=30)
IDS = [f"v{i}" for i in range(9)] + ["broken"]
runner = CliRunner()


def records(out: Path, name: str = "shards") -> list[dict]:
    """Accepted records (name "shards"), rejections ("rejected") or a training file ("captions", "vqa"), sorted."""
    paths = {"shards": sorted((out / "shards").glob("*.jsonl")), "rejected": [out / "rejected.jsonl"],
             "captions": [out / "train" / "captions.jsonl"], "vqa": [out / "train" / "vqa.jsonl"]}[name]  # fmt: skip
    return sorted((r for p in paths for r in read_jsonl(p)), key=lambda r: json.dumps(r, sort_keys=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One unsharded run and the three shards of K=3 over the same manifest (one video undecodable, one repaired)."""
    root = tmp_path_factory.mktemp("shards")
    video = _write_video(root / "v.mp4", 2)
    (root / "broken.mp4").write_bytes(b"not a video")
    rows = [{"video": str(video), "id": i, "title": i, "source": f"s{n % 2}"} for n, i in enumerate(IDS[:-1])]
    rows.append({"video": str(root / "broken.mp4"), "id": "broken", "title": "broken"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, outs = load_manifest(root / "m.jsonl"), {"manifest": root / "m.jsonl"}
    with ScriptedServer() as server:
        client = make_client(server.base_url, "k", "m", timeout=30, policy=FAST)
        for name, shard in [("full", ShardSpec()), *((f"s{i}", ShardSpec(3, i)) for i in range(3))]:
            server.script["v4"] = [Reply("{not json"), Reply(valid_answer("v4"))]  # repaired in both runs
            run_synthesis(items, root / name, client, SynthOptions(concurrency=4), shard_size=2, shard=shard)
            outs[name] = root / name
    return outs


def test_shard_of_is_a_stable_sha256_split() -> None:
    assert [shard_of(f"v{i}", 3) for i in range(9)] == [1, 2, 2, 0, 0, 1, 1, 2, 1]  # pinned: same on every machine
    assert shard_of("abc", 1000) == int(hashlib.sha256(b"abc").hexdigest(), 16) % 1000
    with pytest.raises(ValueError, match=r"--shard-index must be in 0..2 for --num-shards 3 \(got 3\)"):
        ShardSpec(3, 3)


def test_three_shards_cover_the_manifest_exactly_once(runs: dict[str, Path]) -> None:
    seen: list[str] = []
    for i in range(3):
        ids = [r["video_id"] for r in records(runs[f"s{i}"]) + records(runs[f"s{i}"], "rejected")]
        assert ids and all(shard_of(video_id, 3) == i for video_id in ids)
        seen += ids
        info = json.loads((runs[f"s{i}"] / "synth.json").read_text())
        assert info["shard"] == {"num_shards": 3, "index": i} and info["settings"]["model"] == "m"
    assert sorted(seen) == sorted(IDS)


def test_merge_equals_the_unsharded_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged"
    result = merge_outputs([runs["s2"], runs["s0"], runs["s1"]], out, shard_size=2)
    assert (result.accepted, result.rejected, result.duplicates, result.missing_shards) == (9, 1, 0, [])
    for name in ("shards", "rejected", "captions", "vqa"):
        assert records(out, name) == records(runs["full"], name), name
    report, full = (json.loads((d / "report.json").read_text()) for d in (out, runs["full"]))
    assert report == full
    assert json.loads((out / "synth.json").read_text())["merged_from"] == [str(runs[f"s{i}"]) for i in (2, 0, 1)]
    again = merge_outputs([runs["s2"], runs["s0"], runs["s1"]], out, shard_size=2)  # a rerun finishes or redoes it
    assert again.accepted == 9 and records(out) == records(runs["full"])
    with pytest.raises(ValueError, match="exists and is not empty"):
        merge_outputs([runs["s0"], runs["s1"]], out)


def test_merge_of_some_shards_and_of_independent_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    part = merge_outputs([runs["s0"], runs["s2"]], tmp_path / "part")
    assert part.missing_shards == [1] and part.accepted == len(records(runs["s0"]) + records(runs["s2"]))
    twice = merge_outputs([runs["full"], tmp_path / "part"], tmp_path / "twice")  # K=1 runs: ids de-duplicated
    assert (twice.accepted, twice.duplicates) == (9, part.accepted)


def _copy(src: Path, dst: Path, **shard: int) -> Path:
    shutil.copytree(src, dst)
    info = json.loads((dst / "synth.json").read_text())
    info["shard"].update(shard)
    (dst / "synth.json").write_text(json.dumps(info))
    return dst


def test_merge_refuses_overlapping_and_inconsistent_folders(runs: dict[str, Path], tmp_path: Path) -> None:
    s0, s1, s2 = runs["s0"], runs["s1"], runs["s2"]
    out = tmp_path / "out"
    cases = [
        ([s0, _copy(s1, tmp_path / "s1b"), s1], r"s1b and .*/s1 are both shard 1 of 3: overlapping shards"),
        ([s0, _copy(s1, tmp_path / "k2", num_shards=2)], r"different --num-shards"),
        ([s0, s2, _copy(s0, tmp_path / "moved", index=1)], r"moved: video 'v[34]' is not in shard 1 of 3"),
        ([s0, s0], "given twice"),
        ([s0, tmp_path], "not an output folder of `tempflex synth` \\(no shards/ folder\\)"),
        ([s0, s1], "--out .* is one of the folders"),
    ]
    for inputs, message in cases:
        with pytest.raises(ValueError, match=message):
            merge_outputs(inputs, s1 if "--out" in message else out)
    other = _copy(s1, tmp_path / "other_model")
    info = json.loads((other / "synth.json").read_text())
    info["settings"]["model"] = "gpt-4o"
    (other / "synth.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"made with different settings \(model 'm' -> 'gpt-4o'\)"):
        merge_outputs([s0, other, s2], out)
    assert not (out / "shards").exists()  # nothing written before the checks passed


def test_a_shard_folder_refuses_another_split_or_other_settings(runs: dict[str, Path]) -> None:
    items = load_manifest(runs["manifest"])
    with ScriptedServer() as server:
        client = make_client(server.base_url, "k", "m", timeout=30, policy=FAST)
        with pytest.raises(ValueError, match=r"holds shard 0 of 3 \(--num-shards 3 --shard-index 0\), not shard 0 of 2"):
            run_synthesis(items, runs["s0"], client, shard=ShardSpec(2, 0))
        with pytest.raises(ValueError, match=r"made with other settings \(tile_width 448 -> 224\)"):
            run_synthesis(items, runs["s0"], client, SynthOptions(tile_width=224), shard=ShardSpec(3, 0))
        summary = run_synthesis(items, runs["s0"], client, shard=ShardSpec(3, 0))  # the same split resumes
        assert summary.skipped == len(records(runs["s0"]) + records(runs["s0"], "rejected")) and not server.requests


def test_cli_bad_inputs_are_one_line(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    base = ["synth", "--manifest", str(runs["manifest"]), "--out", str(tmp_path / "o"), "--base-url",
            "http://127.0.0.1:9/v1", "--model", "m"]  # fmt: skip
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    for args, message in [
        ([*base, "--num-shards", "3", "--shard-index", "5"], "error: --shard-index must be in 0..2 for --num-shards 3 (got 5)"),
        ([*base, "--engine", "ray"], "error: --engine ray needs Ray: pip install 'tempflex[ray]'"),
        ([*base, "--address", "auto"], "error: --address is for --engine ray"),
        (["synth-merge", str(tmp_path), "--out", str(tmp_path / "m")], f"error: {tmp_path}: not an output folder of `tempflex synth` (no shards/ folder)"),
    ]:  # fmt: skip
        result = runner.invoke(app, args)
        assert (result.exit_code, result.stderr.strip()) == (2, message), result.output
    result = runner.invoke(app, ["synth-merge", str(runs["s0"]), str(runs["s1"]), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    warning = "warning: shards 2 of 3 were not given; merge again with them into the same --out when they are done"
    assert result.stderr.strip() == warning and result.stdout.strip().splitlines()[-1].startswith("accepted ")
    result = runner.invoke(app, ["synth-merge", *(str(runs[f"s{i}"]) for i in range(3)), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0 and not result.stderr and len(records(tmp_path / "m")) == 9, result.output
    result = runner.invoke(app, ["synth-merge", str(runs["s0"]), "--out", str(tmp_path / "m")])  # fewer: refused
    assert result.exit_code == 2 and "exists and is not empty" in result.stderr
