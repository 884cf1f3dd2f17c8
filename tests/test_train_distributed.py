"""Many processes on one CPU: torchrun with gloo against one process, and DeepSpeed ZeRO-2 with 2 processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.processing import TempFlexProcessor

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import write_recipe

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "train_fixtures.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(recipe: Path, nproc: int, *overrides: str) -> str:
    """Run the fixtures' runner on ``nproc`` processes (torchrun when > 1); returns its output."""
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                                       "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *launcher, str(FIXTURES), str(recipe), *overrides], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def max_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.mark.parametrize("micro", [1, 2])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, micro: int) -> None:
    finals = []
    for nproc in (1, 2):
        work = tmp_path / f"n{nproc}"
        work.mkdir()
        run(write_recipe(work, batch={"global_batch": 4, "micro_batch": micro}, schedule={"epochs": 2}), nproc)
        finals.append(work / "run" / "final")
    log = [json.loads(x) for x in (tmp_path / "n2" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # 8 samples, 4 per step over both ranks, 2 epochs
    assert max_diff(*finals) < 1e-5


def test_deepspeed_zero2_two_processes_completes_and_loads(tmp_path: Path) -> None:
    pytest.importorskip("deepspeed")
    recipe = write_recipe(tmp_path, deepspeed=str(ROOT / "configs" / "deepspeed" / "zero2.json"),
                          checkpoint={"every": 1, "keep": 1})
    out = run(recipe, 2)
    final = tmp_path / "run" / "final"
    model = TempFlexForConditionalGeneration.from_pretrained(final)
    TempFlexProcessor.from_pretrained(final)
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "pytorch_model").is_dir() and (ckpt / "model" / "model.safetensors").is_file()
    assert sum(p.numel() for p in model.parameters()) > 0 and "Traceback" not in out
