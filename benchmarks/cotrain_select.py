"""Probe accuracy of co-training arms under the flux reducer: a table from ``budget_probes.py``'s per-question cache.

Each arm is a model fine-tuned by ``recipes/tempflex-tiny/cotrain_select.yaml`` with one ``cotrain`` setting (none,
select resize, flux, mask). Score each first (the rows land in the shared cache), then tabulate:

    .venv/bin/python benchmarks/budget_probes.py --model runs/cotrain-select/flux/checkpoint-5/model \
        --data runs/probes-seed1 --limit 30 --methods flux --budgets 1,2,4 --cache runs/cotrain-select/eval/cache \
        --out runs/cotrain-select/eval/flux --plot runs/cotrain-select/eval/flux.png
    .venv/bin/python benchmarks/cotrain_select.py none=runs/cotrain-select/none/checkpoint-5/model \
        resize=runs/cotrain-select/resize/checkpoint-5/model flux=runs/cotrain-select/flux/checkpoint-5/model --limit 30

For every (arm, tokens a frame): accuracy on the first ``--limit`` test questions (the split cycles through the ten
skills, so equal per skill) with its 95 % Wilson interval; for every arm after the first, the paired comparison with
the first arm on the same questions: questions only it gets right / only the first arm gets right, and the exact
two-sided sign-test p-value of that split (McNemar's exact test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from budget_probes import cache_dir

from tempflex.eval.stats import sign_test, wilson


def rows(model: Path, data: Path, caches: list[Path], per_frame: int, limit: int) -> dict[str, bool]:
    """Question id -> right, for the first ``limit`` test questions of one cell (from the first cache that has the
    cell); an error if any is missing."""
    paths = [cache_dir(model, data, c) / f"flux-{per_frame}" / "rows.jsonl" for c in caches]
    path = next((p for p in paths if p.is_file()), paths[0])
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: score {model} with budget_probes.py first (see --help)")
    got = {r["id"]: r["answer"] == r["predicted"] for r in map(json.loads, path.read_text().splitlines()) if "id" in r}
    wanted = [json.loads(line)["id"] for line in (data / "test.jsonl").read_text().splitlines()[:limit]]
    missing = [q for q in wanted if q not in got]
    if missing:
        raise SystemExit(f"error: {path} lacks {len(missing)} of the first {limit} questions (e.g. {missing[0]})")
    return {q: got[q] for q in wanted}


def table(arms: dict[str, Path], data: Path, caches: list[Path], budgets: list[int], limit: int) -> str:
    lines = ["| arm | tokens a frame | right / n | accuracy | 95 % Wilson | vs " + next(iter(arms)) + ": only it / only "
             "the first | p (sign test) |", "|---|---|---|---|---|---|---|"]
    for b in budgets:
        base = None
        for name, model in arms.items():
            right = rows(model, data, caches, b, limit)
            k, n = sum(right.values()), len(right)
            low, high = wilson(k, n)
            versus = p = ""
            if base is None:
                base = right
            else:
                wins = sum(right[q] and not base[q] for q in right)
                losses = sum(base[q] and not right[q] for q in right)
                versus, p = f"{wins} / {losses}", f"{sign_test(wins, losses):.2f}"
            lines.append(f"| {name} | {b} | {k} / {n} | {k / n:.2f} | {low:.2f}-{high:.2f} | {versus} | {p} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arms", nargs="+", help="NAME=MODEL_DIR, the first is the reference")
    parser.add_argument("--data", type=Path, default=ROOT / "runs/probes-seed1")
    parser.add_argument("--cache", type=Path, action="append", help="budget_probes.py --cache folders, searched in "
                        "order (default: runs/cotrain-select/eval/cache, then runs/budget)")
    parser.add_argument("--budgets", default="1,2,4", help="tokens a frame")
    parser.add_argument("--limit", type=int, default=30, help="first N test questions")
    args = parser.parse_args()
    arms = {}
    for item in args.arms:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"error: {item}: give NAME=MODEL_DIR with an existing directory")
        arms[name] = Path(path)
    caches = args.cache or [ROOT / "runs/cotrain-select/eval/cache", ROOT / "runs/budget"]
    print(table(arms, args.data, caches, [int(b) for b in args.budgets.split(",")], args.limit))


if __name__ == "__main__":
    main()
