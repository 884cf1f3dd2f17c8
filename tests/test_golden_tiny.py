"""tempflex-tiny's option log-probabilities on the ten shipped examples, with and without a token budget, held to
golden values (1e-5): any refactoring of the model, its word bridge, the processor or the budget pipeline must leave
the default model's answers exactly as they are (slow: loads the real Gemma3-270M).

Regenerate (only when the shipped weights change on purpose): ``python tests/test_golden_tiny.py --update``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).parent / "golden" / "tempflex_tiny_examples.json"
BUDGETS = {"object_direction.mp4": "flux:32", "counting.mp4": "uniform:24", "event_order.mp4": "ata:40"}
pytestmark = pytest.mark.slow


def _questions() -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / "questions.jsonl").read_text().splitlines()]


def option_logprobs(asker) -> dict[str, list[float]]:
    """Each example's option log-probabilities, keyed ``video`` or ``video|budget``."""
    from tempflex.ask import load_media

    out = {}
    for example in _questions():
        media = load_media(video=EXAMPLES / example["video"], frames=asker.default_frames)
        answer = asker.ask(example["question"], media, options=example["options"])
        out[example["video"]] = list(answer.option_logprobs.values())
        if example["video"] in BUDGETS:
            spec = BUDGETS[example["video"]]
            answer = asker.ask(example["question"], media, options=example["options"], budget=spec)
            out[f"{example['video']}|{spec}"] = list(answer.option_logprobs.values())
    return out


@pytest.fixture(scope="module")
def asker():
    from tempflex.ask import Asker

    return Asker()


def test_default_model_option_logprobs_match_the_golden_values(asker) -> None:
    golden = json.loads(GOLDEN.read_text())
    got = option_logprobs(asker)
    assert set(got) == set(golden)
    for key, values in golden.items():
        assert got[key] == pytest.approx(values, abs=1e-5), key


def test_free_answers_stop_at_the_end_of_the_turn(asker) -> None:
    """A free answer holds no role text of the chat template: generation stops at the end of the assistant's turn."""
    from tempflex.ask import load_media

    media = load_media(video=EXAMPLES / "object_direction.mp4", frames=asker.default_frames)
    for question in ("What?", "What happens in the video?"):
        answer = asker.ask(question, media, max_new_tokens=48)
        assert "User:" not in answer.text and "Assistant:" not in answer.text, answer.text


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    from tempflex.ask import Asker

    GOLDEN.write_text(json.dumps(option_logprobs(Asker()), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
