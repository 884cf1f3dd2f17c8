"""The paper's table 4 in miniature: accuracy per probe skill with TFF off, each single fibre, each pair, all three.

TFF learns in stage 0 (recipes/tempflex-tiny/stage0_warmup.yaml), where the visual path is trained against the
questions' options without the LLM's layers; every variant runs that recipe alike (same data, steps, seed, learning
rates), changing only ``tff_enabled`` / ``tff_fibres``, and is scored by its stage-0 head on a test split generated
with a new seed. The head reads every merged token in order, so time is visible to all variants; what TFF adds is
fusion along each patch's fibre before the merger. The training videos are decoded once for all variants; finished
variants are kept in the JSON file, so the script resumes after an interruption.

    # training data: the four `tempflex probes generate` commands in recipes/tempflex-tiny/mixture_train.yaml
    .venv/bin/tempflex probes generate --out runs/probes-seed1 --seed 1 --n 1000 --split test=1.0
    .venv/bin/python benchmarks/tff_ablation.py --test runs/probes-seed1                # the recipe: 1050 steps
    .venv/bin/python benchmarks/tff_ablation.py --test runs/probes-seed1 --steps 200 \
        --mixture runs/probes/mixture_train.yaml         # the probes alone, no curriculum (the tables in docs/)

Writes benchmarks/results/tff_ablation.md (table), benchmarks/results/tff_ablation.json and
docs/img/tff_ablation.png (accuracy per skill and variant).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes/tempflex-tiny/stage0_warmup.yaml"
FIBRES = ("local", "memory", "periodic")
VARIANTS: dict[str, tuple[str, ...] | None] = {  # None: the model is built without TFF
    "not-built": None,
    "off": (),
    "local": ("local",),
    "memory": ("memory",),
    "periodic": ("periodic",),
    "local+memory": ("local", "memory"),
    "local+periodic": ("local", "periodic"),
    "memory+periodic": ("memory", "periodic"),
    "all": FIBRES,
}
TEMPORAL = ("object_direction", "camera_direction", "speed_change", "event_order", "counting", "attribute_change",
            "periodic", "before_after")


def load(name: str, runs: Path, steps: int, temporal_lr: float | None, mixture: Path | None):
    """The stage-0 recipe for one variant.

    "off" builds the same TFF (so every variant draws the same initial weights from the same random stream) and
    freezes it at its initialisation, where its LayerNorm's gain and bias are zero and it returns its input
    exactly (Z = X, eq. 5): TFF off, with nothing else changed. "not-built" builds the model without TFF, which
    also changes the random initialisation of what is built after it: the difference between the two is that of
    the initialisation alone.
    """
    from tempflex.train.recipe import load_recipe

    fibres = VARIANTS[name]
    lr = dict(load_recipe(RECIPE).optim.lr)
    if temporal_lr is not None:
        lr["temporal"] = temporal_lr
    common = [f"output_dir={runs / name}", f"schedule.max_steps={steps}", "checkpoint.every=null"]
    if mixture is not None:  # other data: the recipe's curriculum names datasets of its own mixture
        common += [f"data.mixture={mixture}", "warmup.curriculum=[]"]
    if fibres:
        return load_recipe(RECIPE, [*common, f"model.assemble.config.tff_fibres=[{','.join(fibres)}]",
                                    f"optim.lr={json.dumps(lr)}"])
    lr.pop("temporal")
    off = [*common, f"optim.lr={json.dumps(lr)}", "optim.freeze=[language_model, temporal]"]
    return load_recipe(RECIPE, off if fibres is not None else [*off, "model.assemble.config.tff_enabled=false"])


def table(results: dict[str, dict]) -> str:
    skills = sorted({s for r in results.values() for s in r["accuracy"] if s != "all"},
                    key=lambda s: (s not in TEMPORAL, s))
    head = "| variant | " + " | ".join(s.replace("_", " ") for s in skills) + " | temporal mean | all |"
    lines = [head, "|" + "---|" * (len(skills) + 3)]
    for name in VARIANTS:
        if name not in results:
            continue
        acc = results[name]["accuracy"]
        temporal = sum(acc[s] for s in skills if s in TEMPORAL) / sum(s in TEMPORAL for s in skills)
        lines.append(f"| {name} | " + " | ".join(f"{acc[s]:.2f}" for s in skills) +
                     f" | {temporal:.2f} | {acc['all']:.2f} |")
    return "\n".join(lines)


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n in VARIANTS if n in results]
    skills = sorted({s for r in results.values() for s in r["accuracy"] if s != "all"},
                    key=lambda s: (s not in TEMPORAL, s))
    grid = np.array([[results[n]["accuracy"][s] for s in skills] for n in names])
    fig, ax = plt.subplots(figsize=(1.0 * len(skills) + 2, 0.5 * len(names) + 2))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(skills)), [s.replace("_", "\n") for s in skills], fontsize=8)
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(skills)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="test accuracy")
    ax.set_title("TFF fibres, stage-0 head accuracy on the seed-1 test split")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    import torch

    from tempflex.train.engine import Trainer
    from tempflex.train.objectives.option_data import load_option_records, option_records
    from tempflex.train.objectives.option_head import option_accuracy
    from tempflex.train.objectives.options import OptionsObjective

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test", type=Path, default=ROOT / "runs/probes-seed1", help="probe set with a test split")
    parser.add_argument("--steps", type=int, default=1050, help="stage-0 steps per variant (the recipe's: 1050)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs/ablation")
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--temporal-lr", type=float, default=None, help="TFF's learning rate (default: the recipe's)")
    parser.add_argument("--name", default="tff_ablation", help="results file stem in benchmarks/results/")
    parser.add_argument("--mixture", type=Path, default=None,
                        help="training questions, without the recipe's curriculum if it has one (default: the "
                             "recipe's data)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out_json = ROOT / f"benchmarks/results/{args.name}.json"
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    from tempflex.train.recipe import load_recipe

    mixture = (args.mixture or Path(load_recipe(RECIPE).data.mixture)).resolve()  # results hold for their data
    settings = {"steps": args.steps, "temporal_lr": args.temporal_lr,
                "mixture": str(mixture.relative_to(ROOT) if mixture.is_relative_to(ROOT) else mixture)}
    results = {k: v for k, v in results.items() if all(v.get(s) == x for s, x in settings.items())}
    train = test = None
    for name in args.only:
        if name in results:
            continue
        recipe = load(name, args.runs, args.steps, args.temporal_lr, args.mixture)
        start = time.perf_counter()
        trainer = Trainer(recipe, objective=OptionsObjective(recipe, data=train))
        if train is None:  # decoded once, with the first variant's model (the LLM's table is the same for all)
            train = trainer.objective.data
            records, *_ = option_records(args.test / "mixture_test.yaml")
            test = load_option_records(records, args.test, trainer.base_model, trainer.processor,
                                       recipe.data.num_frames, train.vocab)
        trainer.run()
        accuracy = option_accuracy(trainer.base_model, trainer.objective.head, test)
        results[name] = {**settings, "accuracy": accuracy, "questions": len(test),
                         "seconds": time.perf_counter() - start}
        print(name, json.dumps(accuracy), flush=True)
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (ROOT / f"benchmarks/results/{args.name}.md").write_text(text + "\n")
    plot(results, ROOT / f"docs/img/{args.name}.png")
    print(text)


if __name__ == "__main__":
    main()
