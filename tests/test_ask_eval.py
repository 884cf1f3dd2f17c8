"""Probe evaluation and `tempflex ask` on tiny random models and real files; the trained default model is in
test_default_model.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import skimage_photo, tiny_model
from typer.testing import CliRunner

from tempflex.ask import Asker, load_media, model_frames
from tempflex.cli import app
from tempflex.eval.stats import sign_test
from tempflex.probes.evaluate import Prediction, answer_tokens, evaluate, plot_report, summarise, wilson
from tempflex.probes.format import format_question
from tempflex.video import VideoDecodeError, load_video

runner = CliRunner()


def test_wilson_interval_golden_values() -> None:
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)


def test_sign_test_golden_values() -> None:
    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0
    assert sign_test(6, 0) == sign_test(0, 6) == 2 / 64  # 1/64 for each tail
    assert round(sign_test(15, 5), 4) == 0.0414  # scipy.stats.binomtest(15, 20).pvalue


def test_options_are_told_apart_by_one_token_after_their_shared_lead() -> None:
    for text in ("qwen3", "gemma3"):
        _, processor = tiny_model(text)
        tokens = answer_tokens(processor, ["left", "right", "up", "down"])
        assert len(set(tokens.ids)) == 4
        tok = processor.tokenizer
        assert "left".startswith(tok.decode(tokens.lead + [tokens.ids[0]]).strip())  # its first token
    _, processor = tiny_model()
    shared = answer_tokens(processor, ["the cat", "the dog"])  # a common first word becomes the lead
    assert shared.lead and len(set(shared.ids)) == 2
    with pytest.raises(ValueError, match="cannot be told apart"):
        answer_tokens(processor, ["red to blue", "blue to red", "red to green"])  # two start with "red"


def test_evaluate_scores_every_question_and_summarises_per_skill(probes: Path) -> None:
    model, processor = tiny_model()
    report, predictions = evaluate(model, processor, probes, split="test", frames=8, batch_size=6)
    records = [json.loads(line) for line in (probes / "test.jsonl").read_text().splitlines()]
    assert len(predictions) == report.questions == len(records) == 20
    assert [p.id for p in predictions] == [r["id"] for r in records]
    for p, r in zip(predictions, records):
        assert p.answer == r["answer"] in r["options"] and p.n_options == len(r["options"]) == len(p.scores)
        assert abs(sum(torch.tensor(p.scores).exp()) - 1) < 1e-4  # a softmax over the offered letters
        assert p.visual_tokens == 8 * 4  # 8 frames of 64x64 px: 2x2 merged tokens each
        assert p.predicted == r["options"][max(range(len(p.scores)), key=p.scores.__getitem__)]
    assert {s.skill for s in report.skills} == {r["skill"] for r in records}
    for s in report.skills:
        assert s.ci_low <= s.accuracy <= s.ci_high and 0 < s.chance < 1
    temporal = [s for s in report.skills if s.temporal]
    assert report.temporal_accuracy == pytest.approx(sum(s.accuracy for s in temporal) / len(temporal))


def test_evaluate_is_batch_size_invariant(probes: Path) -> None:
    """Left padding with positions from the mask: a question scores the same alone or in a batch."""
    model, processor = tiny_model("gemma3")
    _, one = evaluate(model, processor, probes, frames=8, batch_size=1, limit=6)
    _, six = evaluate(model, processor, probes, frames=8, batch_size=6, limit=6)
    for a, b in zip(one, six):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)


def test_summarise_and_plot(tmp_path: Path) -> None:
    preds = [Prediction(f"q{i}", "counting", True, "2", "2" if i < 3 else "3", 4, 64, [0.0] * 4) for i in range(4)]
    preds.append(Prediction("s", "appearance", False, "cross", "cross", 4, 64, [0.0] * 4))
    report = summarise(preds, model="m", data="d", split="test", frames=16)
    counting = next(s for s in report.skills if s.skill == "counting")
    assert (counting.correct, counting.n, counting.accuracy, counting.chance) == (3, 4, 0.75, 0.25)
    assert report.temporal_accuracy == 0.75 and report.static_accuracy == 1.0
    assert plot_report(report, tmp_path / "a.png").stat().st_size > 1000


def test_ask_scores_options_and_generates(saved_tiny: Path, probes: Path) -> None:
    asker = Asker(saved_tiny)
    assert asker.default_frames == model_frames(saved_tiny) == 8
    media = load_media(video=probes / "videos/test/test-000000.mp4", frames=8)
    answer = asker.ask("Which way does it move?", media, options=["left", "right", "up", "down"])
    assert answer.choice == answer.text and answer.text in ("left", "right", "up", "down")
    assert (answer.frames, answer.visual_tokens) == (8, 32)
    assert {"decode", "vision", "tff", "merger", "prefill", "total"} <= set(answer.timings)
    free = asker.ask("What happens?", media, max_new_tokens=4)
    assert free.choice is None and "generate" in free.timings


def test_format_question_matches_the_probe_records(probes: Path) -> None:
    record = json.loads((probes / "test.jsonl").read_text().splitlines()[0])
    prompt = record["conversations"][0]["value"]
    assert prompt == "<video>\n" + format_question(record["question"], record["options"])


def test_ask_cli_json_and_bad_inputs(saved_tiny: Path, probes: Path, tmp_path: Path) -> None:
    video = str(probes / "videos/test/test-000001.mp4")
    ok = runner.invoke(app, ["ask", "--model", str(saved_tiny), "--video", video, "Where?", "-o", "left", "-o",
                             "right", "--json"])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout)
    assert payload["choice"] in ("left", "right") and payload["visual_tokens"] == 32 and payload["frames"] == 8
    scores = payload["option_logprobs"]  # option -> log-probability; the choice is the likeliest
    assert set(scores) == {"left", "right"} and max(scores, key=scores.get) == payload["choice"]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(Path(video).read_bytes()[:3000])
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    photo = str(skimage_photo("astronaut.png"))
    text_png = tmp_path / "notes.png"  # text under an image's name
    text_png.write_text("not a picture\n")
    cases = {
        "no such file": ["--video", str(tmp_path / "missing.mp4"), "What moves?"],
        "cannot open as a video": ["--video", str(corrupt), "What moves?"],
        "empty file (0 bytes)": ["--video", str(zero), "What moves?"],
        "still image (png_pipe), not a video: pass it with --image": ["--video", photo, "What moves?"],
        "not a video or an image: FFmpeg's still-image reader (image2) cannot decode it": ["--video", str(text_png),
                                                                                         "What moves?"],
        "exactly one": ["--video", video, "--image", photo, "What moves?"],
        "not a saved TempFlex model": ["--video", video, "--model", str(tmp_path), "What moves?"],
        "frames must be >= 1": ["--video", video, "--frames", "0", "What moves?"],
    }
    before_loading = {  # checked before the model loads: a model dir that is not one is never read
        "the question holds <video>: give the question alone": ["--video", video, "<video> What moves?"],
        "the question is empty": ["--video", video, "  "],
        "give between 2 and 8 options, got 1": ["--video", video, "What moves?", "-o", "left"],
    }
    cases.update({k: [*v, "--model", str(tmp_path)] for k, v in before_loading.items()})
    for expected, args in cases.items():
        model = [] if "--model" in args else ["--model", str(saved_tiny)]
        result = runner.invoke(app, ["ask", *model, *args])
        assert result.exit_code == 2, (expected, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], (expected, lines)


def test_load_video_refuses_a_still_image() -> None:
    with pytest.raises(VideoDecodeError, match="still image"):
        load_video(skimage_photo("astronaut.png"), num_frames=4)


def test_probes_eval_cli_writes_report_predictions_and_plot(saved_tiny: Path, probes: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["probes", "eval", "--model", str(saved_tiny), "--data", str(probes), "--limit", "10",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["questions"] == 10 and report["frames"] == 8
    assert json.loads((out / "report.json").read_text()) == report
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 10
    assert (out / "accuracy.png").stat().st_size > 1000
    bad = runner.invoke(app, ["probes", "eval", "--model", str(saved_tiny), "--data", str(tmp_path)])
    assert bad.exit_code == 2 and "test.jsonl not found" in bad.stderr


@pytest.mark.parametrize("reduce", ["flux", "drop", "uniform", "ata,segment_frames=2"])
def test_ask_budget_caps_the_visual_tokens(saved_tiny: Path, probes: Path, reduce: str) -> None:
    video = str(probes / "videos/test/test-000002.mp4")
    result = runner.invoke(app, ["ask", "--model", str(saved_tiny), "--video", video, "What moves?", "-o", "left",
                                 "-o", "right", "--budget", "13", "--reduce", reduce, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    spent = answer["budget"]
    assert spent["budget"] == 13 and spent["total"] <= 13 and answer["visual_tokens"] == spent["visual_tokens"] > 0
    assert sum(spent["tokens_per_frame"]) == spent["visual_tokens"]


def test_ask_budget_bad_values_are_one_line_errors(saved_tiny: Path, probes: Path, tmp_path: Path) -> None:
    video = str(probes / "videos/test/test-000002.mp4")
    photo = str(skimage_photo("astronaut.png"))
    cases = {"positive": ["--video", video, "--budget", "0"], "unknown reducer": ["--video", video, "--budget", "8",
             "--reduce", "nope"], "applies to videos": ["--image", photo, "--budget", "8"],
             "give --budget N too": ["--video", video, "--reduce", "drop"]}
    for expected, args in cases.items():
        result = runner.invoke(app, ["ask", "--model", str(saved_tiny), *args, "What?"])
        assert result.exit_code == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            expected, result.output)
    # a reducer option is checked before the model loads: an empty folder as the model is never reached
    result = runner.invoke(app, ["ask", "--model", str(tmp_path), "--video", video, "--budget", "8", "--reduce",
                                 "flux,groups=0", "What?"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: reducer 'flux': groups must be >= 1, got 0"


def test_ask_runs_on_a_real_video(saved_tiny: Path) -> None:
    from tempflex.samples import sample_videos

    video = next(v for v in sample_videos() if v.name == "bigbuckbunny.mp4")  # 1280x720: 16:9 frames
    result = runner.invoke(app, ["ask", "--model", str(saved_tiny), "--video", str(video), "What happens?",
                                 "--max-new-tokens", "3", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["frames"] == 8 and answer["visual_tokens"] > 0 and "generate" in answer["timings"]


def test_ask_says_so_when_the_default_model_is_missing(probes: Path, tmp_path: Path, monkeypatch) -> None:
    import tempflex.ask

    monkeypatch.setattr(tempflex.ask, "DEFAULT_MODEL", tmp_path / "tempflex-tiny")
    result = runner.invoke(app, ["ask", "--video", str(probes / "videos/test/test-000000.mp4"), "What moves?"])
    assert result.exit_code == 2 and "the default model is missing" in result.stderr


def test_ask_a_question_file_with_one_loaded_model(saved_tiny: Path, probes: Path, tmp_path: Path) -> None:
    """--questions answers every line of a JSONL file (examples/questions.jsonl's format) with one model: one JSON
    line each, the file's answer beside the model's; bad files are one-line errors before the model loads."""
    records = [json.loads(line) for line in (probes / "test.jsonl").read_text().splitlines()[:3]]
    lines = [{"video": f"../{probes.name}/{r['video']}", "question": r["question"], "options": r["options"],
              "answer": r["options"][r["answer_index"]]} for r in records]
    lines.append({"video": f"../{probes.name}/{records[0]['video']}", "question": "What happens?"})
    path = probes.parent / "questions" / "questions.jsonl"  # media paths are relative to the file's folder
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = runner.invoke(app, ["ask", "--model", str(saved_tiny), "--questions", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 4 and [o["question"] for o in out] == [x["question"] for x in lines]
    for o, x in zip(out[:3], lines):
        assert o["choice"] in x["options"] and o["correct"] == (o["choice"] == x["answer"])
    assert out[3]["choice"] is None and "correct" not in out[3]
    bad = {"not a JSON object": "{oops\n", 'needs a "question"': '{"video": "a.mp4"}\n',
           'exactly one of "video" or "image"': '{"question": "Q?"}\n', "no questions": "\n",
           "questions.jsonl:1: the question holds <video>": '{"video": "a.mp4", "question": "<video> Q?"}\n',
           "questions.jsonl:1: give between 2 and 8 options, got 1": '{"video": "a.mp4", "question": "Q?", '
                                                                    '"options": ["a"]}\n',
           "questions.jsonl:1: the options must be a list of strings, got 3":
               '{"video": "a.mp4", "question": "Q?", "options": 3}\n'}
    for expected, text in bad.items():  # checked before the model loads: a model dir that is not one is never read
        path.write_text(text)
        result = runner.invoke(app, ["ask", "--model", str(tmp_path), "--questions", str(path)])
        assert result.exit_code == 2 and expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            expected, result.output)
    result = runner.invoke(app, ["ask", "--questions", str(path), "Q?"])
    assert result.exit_code == 2 and "give no question" in result.stderr
