"""The paper's table 4 in miniature: accuracy per probe skill with TFF off, each single fibre, each pair, all three.

Every variant starts from the same stage-1 model (runs/tempflex-tiny/stage1/final) and runs the same stage-2
recipe (recipes/tempflex-tiny/stage2_temporal.yaml: same data, steps, seed, learning rates), changing only
``model.config.tff_fibres``; "off" keeps TFF out and trains the merger alone for the same steps. "all" is the
default model's own stage 2 (output_dir runs/tempflex-tiny/stage2). Each variant is then scored with
``tempflex probes eval`` on a test split generated with a new seed. Finished runs and evaluations are skipped, so
the script resumes after an interruption.

    .venv/bin/tempflex probes generate --out runs/probes --seed 0 --n 6000          # training data
    .venv/bin/tempflex probes generate --out runs/probes-seed1 --seed 1 --n 1000 --split test=1.0
    .venv/bin/tempflex train recipes/tempflex-tiny/stage1_align.yaml
    .venv/bin/python benchmarks/tff_ablation.py --test runs/probes-seed1

Writes benchmarks/results/tff_ablation.md (table), benchmarks/results/tff_ablation.json and
docs/img/tff_ablation.png (accuracy per skill and variant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/tempflex-tiny/stage2_temporal.yaml"
FIBRES = ("local", "memory", "periodic")
VARIANTS: dict[str, tuple[str, ...]] = {
    "off": (),
    "local": ("local",),
    "memory": ("memory",),
    "periodic": ("periodic",),
    "local+memory": ("local", "memory"),
    "local+periodic": ("local", "periodic"),
    "memory+periodic": ("memory", "periodic"),
    "all": FIBRES,
}


def output_dir(name: str, runs: Path) -> Path:
    return ROOT / "runs/tempflex-tiny/stage2" if name == "all" else runs / name


def train_command(name: str, runs: Path) -> list[str]:
    fibres = VARIANTS[name]
    cmd = [sys.executable, "-m", "tempflex", "train", str(RECIPE), f"output_dir={output_dir(name, runs)}",
           "log.progress=false"]
    if fibres:
        return [*cmd, f"model.config.tff_fibres=[{','.join(fibres)}]"]
    return [*cmd, "model.config.tff_enabled=false", "optim.lr={merger: 2.0e-4}",
            "optim.freeze=[vision_tower,temporal,language_model]"]


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def evaluate(name: str, runs: Path, test: Path, limit: int | None) -> dict:
    final = output_dir(name, runs) / "final"
    out = runs / name / "eval"
    report = out / "report.json"
    if not report.is_file():
        cmd = [sys.executable, "-m", "tempflex", "probes", "eval", "--model", str(final), "--data", str(test),
               "--out", str(out), "--json"]
        run([*cmd, *(["--limit", str(limit)] if limit else [])])
    return json.loads(report.read_text())


def table(reports: dict[str, dict]) -> str:
    skills = [s["skill"] for s in next(iter(reports.values()))["skills"]]
    chance = {s["skill"]: s["chance"] for s in next(iter(reports.values()))["skills"]}
    head = "| variant | " + " | ".join(skills) + " | mean temporal | mean static |"
    rows = [head, "|" + "---|" * (len(skills) + 3)]
    rows.append("| chance | " + " | ".join(f"{chance[k]:.2f}" for k in skills) + " | | |")
    for name, rep in reports.items():
        acc = {s["skill"]: s["accuracy"] for s in rep["skills"]}
        rows.append(f"| {name} | " + " | ".join(f"{acc[k]:.2f}" for k in skills)
                    + f" | **{rep['temporal_accuracy']:.3f}** | {rep['static_accuracy']:.3f} |")
    n = next(iter(reports.values()))["questions"]
    return "\n".join(rows) + f"\n\n{n} test questions per variant ({n // len(skills)} per skill); 95 % Wilson " \
        f"intervals per skill are about +-{1.96 * (0.25 / (n / len(skills))) ** 0.5:.2f} at 50 %.\n"


def plot(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    skills = [s["skill"] for s in next(iter(reports.values()))["skills"]]
    grid = np.array([[{s["skill"]: s["accuracy"] for s in r["skills"]}[k] for k in skills] for r in reports.values()])
    fig, ax = plt.subplots(figsize=(1.0 * len(skills) + 3, 0.45 * len(reports) + 2))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(skills)), skills, rotation=35, ha="right")
    ax.set_yticks(range(len(reports)), list(reports))
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_title("TFF fibres ablation on the temporal probes (test split, new seed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, required=True, help="probe set with a test split (a new seed)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/ablation", help="where the variants train")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test questions")
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    for name in names:
        if not (output_dir(name, args.runs) / "final").is_dir():
            run(train_command(name, args.runs))
    reports = {name: evaluate(name, args.runs, args.test, args.limit) for name in names}
    results = ROOT / "benchmarks/results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "tff_ablation.json").write_text(json.dumps(reports, indent=2) + "\n")
    (results / "tff_ablation.md").write_text(table(reports))
    plot(reports, ROOT / "docs/img/tff_ablation.png")
    print(table(reports))


if __name__ == "__main__":
    main()
