"""Token Optimization (tempflex.budget.optimize): the FluxViT heuristic against the grid on synthetic scores with a
known optimum, the budget guarantee over random spaces, caching, bad input, and `tempflex budget optimize` once on a
tiny saved model."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
from conftest import tiny_model
from typer.testing import CliRunner

from tempflex.budget import BudgetError
from tempflex.budget.optimize import grid_search, token_optimization
from tempflex.cli import app
from tempflex.probes.evaluate import probe_scorer

runner = CliRunner()
POWERS = [1, 2, 4, 8, 16, 32, 64]


def anti_diagonal(budget: int, best_frames: int):
    """Higher the more of the budget is spent, and the closer the frame count is to ``best_frames`` (log scale):
    the peak is on the anti-diagonal frames x tokens per frame = budget, at ``best_frames``."""
    return lambda f, p: f * p / budget - 0.1 * abs(math.log2(f) - math.log2(best_frames))


@pytest.mark.parametrize("best_frames", [2, 4, 16, 32])
def test_heuristic_finds_the_anti_diagonal_peak_with_fewer_evaluations_than_the_grid(best_frames: int) -> None:
    score = anti_diagonal(128, best_frames)
    heuristic = token_optimization(score, 128, POWERS, POWERS)
    grid = grid_search(score, 128, POWERS, POWERS)
    assert (grid.best.frames, grid.best.tokens_per_frame) == (best_frames, 128 // best_frames)
    best = heuristic.best
    assert (best.frames, best.tokens_per_frame, best.tokens, best.score) == (best_frames, 128 // best_frames, 128,
                                                                             grid.best.score)
    assert heuristic.evaluations < grid.evaluations == 34  # every (f, p) with f * p <= 128
    assert heuristic.evaluations <= len(POWERS) + len(POWERS)  # linear in the options, not their product


def test_trials_are_recorded_in_order_with_their_phase() -> None:
    result = token_optimization(anti_diagonal(128, 16), 128, POWERS, POWERS)
    got = [(t.frames, t.tokens_per_frame, t.tokens, t.phase) for t in result.trials]
    # phase 1 walks up the frames at the largest fitting resolution and stops one step past the peak; phase 2's
    # first trade from (16, 8) is (32, 4), already scored, so it costs nothing and ends the search
    assert got == [(1, 64, 64, "frames"), (2, 64, 128, "frames"), (4, 32, 128, "frames"), (8, 16, 128, "frames"),
                   (16, 8, 128, "frames"), (32, 4, 128, "frames")]
    assert [round(t.score, 6) for t in result.trials] == [0.1, 0.7, 0.8, 0.9, 1.0, 0.9]
    assert result.to_json()["best"]["frames"] == 16


def test_phase_two_trades_resolution_for_frames_after_a_plateau() -> None:
    # a plateau at full resolution stops phase 1 before the budget binds; only the trade reaches (32, 8)
    score = lambda f, p: 1.0 if (f, p) == (32, 8) else 0.5
    result = token_optimization(score, 512, [4, 8, 16, 32], [2, 4, 8, 16])
    assert [(t.frames, t.tokens_per_frame, t.phase) for t in result.trials] == [
        (4, 16, "frames"), (8, 16, "frames"), (32, 8, "trade")]
    assert (result.best.frames, result.best.tokens_per_frame, result.best.score) == (32, 8, 1.0)
    longer = token_optimization(score, 512, [4, 8, 16, 32], [2, 4, 8, 16], patience=3)
    # patience 3: phase 1 tries every frame count at 16 tokens (4 x 16 .. 32 x 16), then the same trade
    assert [(t.frames, t.tokens_per_frame) for t in longer.trials] == [(4, 16), (8, 16), (16, 16), (32, 16), (32, 8)]
    assert longer.best.frames == 32


def test_min_gain_stops_on_a_negligible_improvement() -> None:
    score = lambda f, p: f * 1e-4  # always better, by a hair
    assert token_optimization(score, 64, [1, 2, 4, 8], [1]).evaluations == 4
    assert token_optimization(score, 64, [1, 2, 4, 8], [1], min_gain=1e-3).evaluations == 2


def test_every_configuration_is_scored_once() -> None:
    calls: Counter = Counter()

    def score(f: int, p: int) -> float:
        calls[(f, p)] += 1
        return anti_diagonal(128, 16)(f, p)

    result = token_optimization(score, 128, POWERS, POWERS, patience=len(POWERS))  # long phases overlap
    assert max(calls.values()) == 1 and sum(calls.values()) == result.evaluations
    assert [(t.frames, t.tokens_per_frame) for t in result.trials] == list(calls)  # in call order
    phases = Counter(t.phase for t in result.trials)
    assert phases["frames"] == 7 and phases["trade"] == 0  # phase 2's trades were all scored in phase 1


def test_random_spaces_never_exceed_the_budget() -> None:
    rng = random.Random(0)
    for _ in range(300):
        frames = rng.sample(range(1, 65), rng.randint(1, 6))
        per_frame = rng.sample(range(1, 65), rng.randint(1, 6))
        budget = rng.randint(min(frames) * min(per_frame), 4096)
        table: dict[tuple[int, int], float] = {}
        score = lambda f, p: table.setdefault((f, p), rng.random())  # noqa: B023
        result = token_optimization(score, budget, frames, per_frame, patience=rng.randint(1, 3),
                                    min_gain=rng.choice([0.0, 0.05]))
        grid = grid_search(score, budget, frames, per_frame)
        tried = [(t.frames, t.tokens_per_frame) for t in result.trials]
        assert all(t.tokens == t.frames * t.tokens_per_frame <= budget for t in result.trials + grid.trials)
        assert len(set(tried)) == len(tried) and set(tried) <= {(t.frames, t.tokens_per_frame) for t in grid.trials}
        assert result.best.score == max(t.score for t in result.trials) <= grid.best.score
        assert grid.evaluations == sum(f * p <= budget for f in set(frames) for p in set(per_frame))


@pytest.mark.parametrize(("budget", "frames", "per_frame", "message"), [
    (3, [4, 8], [1, 2], "budget 3 is below the smallest configuration, 4 frames x 1 tokens per frame = 4 tokens"),
    (64, [], [1], "frames_options is empty"),
    (64, [4], [], "tokens_per_frame_options is empty"),
    (64, [0, 4], [1], "frames_options must be positive integers"),
    (64, [4], [-2], "tokens_per_frame_options must be positive integers"),
    (64, [4.5], [1], "frames_options must be positive integers"),
    (0, [4], [1], "the budget must be a positive integer"),
])
def test_bad_spaces_are_one_line_errors(budget, frames, per_frame, message) -> None:
    for search in (token_optimization, grid_search):
        with pytest.raises(BudgetError, match=message):
            search(lambda f, p: 0.0, budget, frames, per_frame)


def test_bad_knobs_and_scores_are_errors() -> None:
    with pytest.raises(BudgetError, match="patience must be >= 1"):
        token_optimization(lambda f, p: 0.0, 64, [4], [1], patience=0)
    with pytest.raises(BudgetError, match="min_gain >= 0"):
        token_optimization(lambda f, p: 0.0, 64, [4], [1], min_gain=-0.1)
    with pytest.raises(ValueError, match=r"score\(4, 1\) is NaN"):
        token_optimization(lambda f, p: math.nan, 64, [4], [1])


def test_probe_scorer_sets_the_frames_and_the_per_frame_tokens(monkeypatch, tmp_path) -> None:
    from tempflex.probes import evaluate as evaluate_module
    from tempflex.probes.evaluate import Prediction

    (tmp_path / "val.jsonl").write_text('{"id": 0}\n')
    seen = []

    def fake_evaluate(model, processor, data, *, split, frames, batch_size, limit):
        seen.append((processor.settings, frames, split, batch_size, limit))
        right = [Prediction(str(i), "s", True, "a", "a" if i < frames else "b", 2, 0, [0.0, 0.0]) for i in range(8)]
        return None, right

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    _, processor = tiny_model()
    before = processor.settings
    score = probe_scorer(object(), processor, tmp_path, limit=3, batch_size=2)
    assert score(2, 16) == 0.25 and score(6, 1) == 0.75
    (s16, f16, *rest16), (s1, f1, *_) = seen
    assert (s16.video_max_tokens_per_frame, s16.video_min_tokens_per_frame, f16, rest16) == (16, 4, 2, ["val", 2, 3])
    assert (s1.video_max_tokens_per_frame, s1.video_min_tokens_per_frame, f1) == (1, 1, 6)
    assert processor.settings is before  # the caller's processor is left as it was
    with pytest.raises(FileNotFoundError, match="test.jsonl not found"):
        probe_scorer(object(), processor, tmp_path, split="test")


def test_cli_optimize_on_a_tiny_saved_model(saved_tiny, probes) -> None:
    args = ["budget", "optimize", "--model", str(saved_tiny), "--data", str(probes), "--split", "test",
            "--limit", "3", "--budget", "8", "--frames", "2,4,8", "--tokens-per-frame", "1,4"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    tried = [(t["frames"], t["tokens_per_frame"]) for t in report["trials"]]
    assert tried[:2] == [(2, 4), (4, 1)] and set(tried) <= {(2, 1), (2, 4), (4, 1), (8, 1)}
    assert all(t["tokens"] <= 8 and 0.0 <= t["score"] <= 1.0 and t["score"] * 3 == round(t["score"] * 3)
               for t in report["trials"])  # accuracy on 3 questions
    assert report["best"] in report["trials"]

    bad = runner.invoke(app, [*args[:-4], "--frames", "4,x"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --frames takes comma-separated integers")
    small = runner.invoke(app, [*args[:-6], "--budget", "1"])
    assert small.exit_code == 2 and small.stderr == ("error: budget 1 is below the smallest configuration, 4 frames x "
                                                     "1 tokens per frame = 4 tokens\n")  # default --frames
