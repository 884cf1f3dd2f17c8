"""The Ray engine of `tempflex synth` on a real local Ray (2 CPUs) against the loopback scripted server: the same
content as the local engine, resume by video id, and a worker SIGKILLed mid-run."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from synth_server import Reply, ScriptedServer, valid_answer
from test_synth import _write_video
from test_synth_shards import records

from tempflex.synth.client import RetryPolicy, make_client
from tempflex.synth.engines import make_engine
from tempflex.synth.manifest import load_manifest
from tempflex.synth.pipeline import Summary, SynthOptions
from tempflex.synth.run import run_synthesis

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_elapsed=60)
ACTOR = "MapBatches(Responder)"  # in the process title of the engine's actors


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _manifest(root: Path, ids: list[str], broken: bool = False) -> Path:
    video = _write_video(root / "v.mp4", 2)
    rows = [{"video": str(video), "id": i, "title": i} for i in ids]
    if broken:
        (root / "broken.mp4").write_bytes(b"not a video")
        rows.append({"video": str(root / "broken.mp4"), "id": "broken", "title": "broken"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "m.jsonl"


def test_ray_engine_writes_what_the_local_engine_writes_and_resumes(ray_session: None, tmp_path: Path) -> None:
    items = load_manifest(_manifest(tmp_path, ["r0", "r1", "r2", "r3"], broken=True))
    script = {"r1": [Reply("{not json"), Reply(valid_answer("r1"))], "r2": [Reply(valid_answer("r2", pairs=4))] * 2}
    outs = {}
    with ScriptedServer() as server:
        client = make_client(server.base_url, "k", "m", timeout=30, policy=FAST)
        for name in ("local", "ray"):
            server.script = {key: list(steps) for key, steps in script.items()}  # repaired, then still invalid
            engine = make_engine(name)
            summary = run_synthesis(items, tmp_path / name, client, SynthOptions(concurrency=2), engine=engine)
            assert (summary.accepted, summary.rejected, summary.pending) == (3, 2, 0), name
            outs[name] = tmp_path / name
        for name in ("shards", "rejected", "captions", "vqa"):
            assert records(outs["ray"], name) == records(outs["local"], name), name
        assert {r["video_id"] for r in records(outs["ray"], "rejected")} == {"r2", "broken"}
        server.requests.clear()
        again = run_synthesis(items, outs["ray"], client, engine=make_engine("ray"))  # resumes by video id
        assert (again.skipped, again.accepted) == (5, 0) and not server.requests


def _descendants_titled(title: str) -> list[int]:
    """Pids of this test's descendant processes (Ray's raylet and its workers) whose command line has ``title``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = []
    for pid in parents:
        ancestor = parents.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        try:
            if ancestor == os.getpid() and title in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_worker_killed_mid_run_is_retried_and_each_video_written_once(ray_session: None, tmp_path: Path) -> None:
    ids = ["k0", "k1", "k2", "k3"]
    items = load_manifest(_manifest(tmp_path, ids))
    out, result = tmp_path / "out", {}
    with ScriptedServer({"k1": [Reply(valid_answer("k1"), delay=60)]}) as server:  # k1's first call hangs
        client = make_client(server.base_url, "k", "m", timeout=120, policy=FAST)

        def drive() -> None:
            result["summary"] = run_synthesis(items, out, client, SynthOptions(concurrency=1), engine=make_engine("ray"))

        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        deadline = time.monotonic() + 120
        while not server.for_key("k1") and time.monotonic() < deadline:
            time.sleep(0.1)
        actors = _descendants_titled(ACTOR)
        assert server.for_key("k1") and len(actors) == 1, actors  # one actor, blocked inside k1's request
        os.kill(actors[0], signal.SIGKILL)
        driver.join(timeout=240)
        assert not driver.is_alive()
    summary: Summary = result["summary"]
    assert (summary.accepted, summary.rejected, summary.pending) == (4, 0, 0)
    assert len(server.for_key("k1")) == 2  # Ray restarted the actor and re-ran the lost call
    assert sorted(r["video_id"] for r in records(out)) == ids  # each video exactly once
    assert len(records(out, "captions")) == 4
