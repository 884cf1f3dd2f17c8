"""Accuracy with a 95 % Wilson interval, the paired sign test, and the bar chart of accuracies, shared by the
benchmarks and the probes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (sound at 0 and 1 successes, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial p-value of ``wins`` against ``losses`` at even odds (1.0 when both are 0): two
    methods on the same questions, counting only the questions where exactly one is right (McNemar's exact test)."""
    n, k = wins + losses, min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return min(1.0, 2 * tail)


def accuracy_bars(path: Path, labels: Sequence[str], accuracy: Sequence[float], low: Sequence[float],
                  high: Sequence[float], *, chance: Sequence[float | None] | None = None,
                  colours: Sequence[str] | None = None, title: str = "", ylabel: str = "accuracy (95 % CI)") -> Path:
    """One bar per label with its interval as error bars; a dashed red tick at each label's chance if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(labels) + 2), 4))
    xs = list(range(len(labels)))
    err = [[a - lo for a, lo in zip(accuracy, low)], [hi - a for a, hi in zip(accuracy, high)]]
    ax.bar(xs, accuracy, yerr=err, color=list(colours) if colours else "tab:blue", capsize=3)
    for x, level in zip(xs, chance or []):
        if level is not None:
            ax.hlines(level, x - 0.4, x + 0.4, colors="tab:red", linestyles="dashed")
    ax.set_xticks(xs, list(labels), rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
