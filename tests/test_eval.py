"""tempflex.eval: each benchmark read from a copy of its published layout, judged by its own rule, aggregated.

The answers here come from a scripted responder, so every accuracy below is worked out by hand from the outputs
chosen for each question; tests/test_eval_run.py runs a real (tiny) model through the same path.
"""

from __future__ import annotations

import json
from pathlib import Path

import eval_fixtures as fx
import pytest

from tempflex.eval import EvalConfig, available, get_benchmark, load_questions, run_eval
from tempflex.eval.extract import first_capital_letter, lvb_letter, mmmu_letter, mvbench_letter, yes_no
from tempflex.eval.responder import Output
from tempflex.eval.stats import wilson
from tempflex.video import load_video


class Scripted:
    """Answers each question with a fixed output (decoding the real video, as a model's responder does)."""

    name = "scripted"

    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs, self.asked = outputs, []

    def decode(self, question):
        return load_video(question.video, num_frames=2)

    def respond(self, questions, media):
        self.asked += [q.id for q in questions]
        return [Output(self.outputs[q.id], 7) for q in questions]


@pytest.fixture(scope="module")
def layouts(probes, tmp_path_factory) -> dict[str, tuple[Path, object]]:
    root = tmp_path_factory.mktemp("layouts")
    built = {name: (root / name, build(probes, root / name)) for name, build in fx.BUILDERS.items()}
    built["tempcompass"] = (root / "tempcompass", fx.tempcompass(probes, root / "tempcompass"))
    return built


def _run(tmp_path, name, data, outputs, **kw):
    responder = Scripted(outputs)
    report = run_eval(EvalConfig(name, data, out=tmp_path / name, plot=kw.pop("plot", False), **kw), responder)
    return report, responder


@pytest.mark.parametrize(("output", "read"), [
    ("(B)", "B"), ("B.", "B"), ("The answer is B", "B"), ("The best answer is C.", "C"), ("b", ""),
    ("Based on the video, C", "B"),  # the first capital A-D wins, as in lmms-eval
    ("Best option: C", "B"),  # its glued prefixes leave "Best" in place
    ("none of the eleven words here name any one letter at all really", ""), ("", ""),
])
def test_videomme_letter_extraction_edge_cases(output, read):
    assert first_capital_letter(output) == read


@pytest.mark.parametrize(("output", "read"), [("B. a dog", "B"), ("(b)", "B"), ("the answer is c", "C"),
                                              ("Option (D) is right", "D"), ("the dog", "the dog")])
def test_mvbench_letter(output, read):
    assert mvbench_letter(output) == read


def test_other_readers_and_seeded_guesses():
    assert lvb_letter("Best option: E", list("ABCDE"), "q") == ("E", True)  # LongVideoBench strips all 8 prefixes
    guessed, read = lvb_letter("no idea", list("ABCD"), "q1")
    assert not read and guessed == lvb_letter("no idea", list("ABCD"), "q1")[0] and guessed in "ABCD"
    opts = ["the red one", "the blue one", "a cat", "a dog", "a bird"]
    assert mmmu_letter("(C)", opts, "q")[0] == "C"
    assert mmmu_letter("I think (A) or maybe (D)", opts, "q")[0] == "D"  # several: the last
    assert mmmu_letter("it was clearly a dog that ran", opts, "q") == ("D", True)  # an option's text, long answer
    assert [yes_no(x) for x in ("Yes.", "no, it is not", "maybe")] == ["yes", "no", ""]


def test_registry_lists_every_benchmark_with_its_files():
    names = available()
    for name in ("videomme", "videomme_w_subtitle", "mvbench", "tempcompass_mc", "tempcompass_yes_no",
                 "tempcompass_caption_matching", "mlvu", "longvideobench", "nextqa", "egoschema"):
        assert name in names and get_benchmark(name).files
    assert get_benchmark("Video-MME".replace("Video-", "video")).name == "videomme"
    with pytest.raises(ValueError, match="unknown benchmark 'vmme'; known: egoschema"):
        get_benchmark("vmme")


@pytest.mark.parametrize("name", sorted(fx.BUILDERS))
def test_each_layout_loads_with_its_answers(layouts, name):
    data, answers = layouts[name]
    _, questions = load_questions(EvalConfig(name, data))
    assert sorted((q.id, q.answer) for q in questions) == sorted(answers)
    assert all(q.video.is_file() and q.choices and q.answer in q.choices for q in questions)


def test_videomme_golden_accuracy_by_duration(layouts, tmp_path):
    data, answers = layouts["videomme"]
    (a1, l1), (a2, l2), (a3, l3), (a4, l4), (a5, l5), (a6, l6) = answers
    assert l5 != "B" and l6 != "B"  # so that the two quirks below are wrong answers
    outputs = {a1: f"({l1})", a2: f"{l2}.", a3: f"The answer is {l3}", a4: l4,
               a5: f"Based on the video, {l5}", a6: f"Best option: {l6}"}
    report, responder = _run(tmp_path, "videomme", data, outputs, batch_size=4)
    # durations cycle short, medium, long: short q1 q4 right; medium q2 right, q5 wrong; long q3 right, q6 wrong
    durations = {s.name: (s.correct, s.n) for s in report.groups["duration"]}
    assert durations == {"short": (2, 2), "medium": (1, 2), "long": (1, 2)}
    assert (report.overall.correct, report.overall.n, report.headline) == (4, 6, pytest.approx(4 / 6))
    assert (report.overall.ci_low, report.overall.ci_high) == pytest.approx(wilson(4, 6))
    assert wilson(4, 6) == pytest.approx((0.2999, 0.9032), abs=1e-4)
    assert report.unmatched == 0 and responder.asked == [a for a, _ in answers]
    lines = [json.loads(x) for x in (tmp_path / "videomme" / "predictions.jsonl").read_text().splitlines()]
    assert [(x["question_id"], x["correct"]) for x in lines] == [(a1, True), (a2, True), (a3, True), (a4, True),
                                                                  (a5, False), (a6, False)]
    assert lines[4]["extracted"] == "B" and lines[0]["prediction"] == f"({l1})"


def test_videomme_subtitles_are_those_of_the_sampled_frames(layouts):
    data, _ = layouts["videomme"]
    _, questions = load_questions(EvalConfig("videomme_w_subtitle", data))
    q = questions[0]
    shown = q.render([0.5, 1.5])
    assert shown.startswith("This video's subtitles are listed below: \nfirst second of vid000\nthe rest of vid000\n")
    assert "based on the video and the subtitles" in shown
    assert "first second" not in q.render([1.5]) and "<font" not in shown


def test_mvbench_per_task_folders_prompt_and_mean_over_tasks(layouts, tmp_path):
    data, answers = layouts["mvbench"]
    _, questions = load_questions(EvalConfig("mvbench", data))
    assert {q.video.parent.relative_to(data / "video").as_posix() for q in questions} == set(fx.MVBENCH_TASKS.values())
    assert questions[0].prompt.startswith("Question:") and "\nOption:\n(A) " in questions[0].prompt
    assert questions[0].prompt.endswith("Answer with the option's letter from the given choices directly.")
    # tasks cycle action_sequence, moving_direction, fine_grained_pose (two questions each)
    wrong = {"A": "B", "B": "C", "C": "D", "D": "A"}
    outputs = {qid: f"({letter.lower()})" for qid, letter in answers}  # right, read through mcq_acc
    (s1, l1), _, (p1, _), _, (m2, _), (p2, _) = answers
    outputs[s1] = f"{wrong[l1]}. something"  # action_sequence 1 of 2
    outputs[m2] = ""  # moving_direction: an empty answer leaves the denominator: 1 of 1
    outputs[p1] = outputs[p2] = "I cannot tell"  # fine_grained_pose 0 of 2
    report, _ = _run(tmp_path, "mvbench", data, outputs)
    tasks = {s.name: (s.correct, s.n) for s in report.groups["task"]}
    assert tasks == {"action_sequence": (1, 2), "moving_direction": (1, 1), "fine_grained_pose": (0, 2)}
    assert report.skipped_empty == 1 and report.questions == 5
    assert report.headline == pytest.approx((0.5 + 1.0 + 0.0) / 3) and report.overall.accuracy == pytest.approx(2 / 5)


def test_tempcompass_three_formats(layouts, tmp_path):
    data, answers = layouts["tempcompass"]
    mc = answers["multi-choice"]
    outputs = {mc[0][0]: mc[0][1], mc[1][0]: f"{mc[1][1]}. whatever", mc[2][0]: f"{mc[2][1]})",
               mc[3][0]: "it moves"}  # no rule matches the last: wrong, unmatched (no GPT judge offline)
    report, _ = _run(tmp_path, "tempcompass_mc", data, outputs)
    assert (report.overall.correct, report.overall.n, report.unmatched) == (3, 4, 1)
    yn = answers["yes_no"]  # two rows a video: yes then no
    outputs = {qid: ("Yes, it is." if truth == "yes" else "no") for qid, truth in yn}
    outputs[yn[1][0]] = "YES"  # wrong
    outputs[yn[2][0]] = "Maybe"  # unmatched, wrong
    report, _ = _run(tmp_path, "tempcompass_yes_no", data, outputs)
    assert (report.overall.correct, report.overall.n, report.unmatched) == (6, 8, 1)
    cm = answers["caption_matching"]
    _, questions = load_questions(EvalConfig("tempcompass_caption_matching", data))
    assert [q.choices for q in questions] == [["A", "B"]] * 4
    line = questions[0].meta["question"].split("\n")[1]
    outputs = {cm[0][0]: line, cm[1][0]: f"Sentence {cm[1][1]}", cm[2][0]: "B", cm[3][0]: "A."}
    report, _ = _run(tmp_path, "tempcompass_caption_matching", data, outputs)
    # q1 the whole right line; q2 its label; q3 "B" but A is right (i even); q4 "A." but B is right
    assert [cm[i][1] for i in range(4)] == ["A", "B", "A", "B"]
    assert (report.overall.correct, report.overall.n) == (2, 4)


def test_mlvu_skips_generation_tasks_and_averages_task_types(layouts, tmp_path):
    data, answers = layouts["mlvu"]
    (p1, lp1), (c1, lc1), (p2, _), (c2, _) = answers
    outputs = {p1: f"{lp1})", c1: f"{lc1}) yes", p2: "not sure", c2: "xyz"}  # lmms-eval reads 'X)' as X
    report, _ = _run(tmp_path, "mlvu", data, outputs)
    types = {s.name: (s.correct, s.n) for s in report.groups["task_type"]}
    assert types == {"PQA": (1, 2), "AC": (1, 2)} and report.headline == pytest.approx(0.5)
    assert report.questions == 4  # 8_sub_scene (a generation task) is not scored


def test_longvideobench_nextqa_egoschema_golden(layouts, tmp_path):
    data, answers = layouts["longvideobench"]
    outputs = {qid: f"The correct option is {letter}" for qid, letter in answers}
    outputs[answers[3][0]] = "E"  # a letter no option has: read, wrong
    report, _ = _run(tmp_path, "longvideobench", data, outputs)
    assert (report.overall.correct, report.overall.n) == (3, 4)
    assert {s.name: (s.correct, s.n) for s in report.groups["duration_group"]} == {"15": (2, 2), "60": (1, 2)}

    data, answers = layouts["nextqa"]
    outputs = {qid: f"({letter})" for qid, letter in answers}
    outputs[answers[0][0]] = "E"  # a filler option: wrong
    report, _ = _run(tmp_path, "nextqa", data, outputs)
    families = {s.name: (s.correct, s.n) for s in report.groups["family"]}
    assert families == {"causal": (0, 1), "temporal": (2, 2), "descriptive": (1, 1)}  # TP counts as TN
    assert {s.name for s in report.groups["type"]} == {"CW", "TN", "DC"}

    data, answers = layouts["egoschema"]
    assert len(answers) == 3  # the fourth question has no public answer
    outputs = {answers[0][0]: answers[0][1], answers[1][0]: f"({answers[1][1]})", answers[2][0]: answers[2][1] + "."}
    report, _ = _run(tmp_path, "egoschema", data, outputs)
    # EgoSchema's rule reads only a whole option line, an option's text or the bare letter: "(X)" and "X." are wrong
    assert (report.overall.correct, report.overall.n, report.unmatched) == (1, 3, 2)


def test_resume_neither_loses_nor_repeats(layouts, tmp_path):
    data, answers = layouts["videomme"]
    outputs = {qid: letter for qid, letter in answers}

    class Killed(Scripted):
        def respond(self, questions, media):
            if len(self.asked) >= 2:
                raise KeyboardInterrupt
            return super().respond(questions, media)

    first = Killed(outputs)
    config = EvalConfig("videomme", data, out=tmp_path / "run", batch_size=2, plot=False)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config, first)
    path = tmp_path / "run" / "predictions.jsonl"
    with open(path, "a") as handle:
        handle.write('{"question_id": "torn')  # a kill in the middle of a line
    second = Scripted(outputs)
    report = run_eval(config, second)
    ids = [json.loads(x)["question_id"] for x in path.read_text().splitlines()]
    assert first.asked == ids[:2] and second.asked == ids[2:] and sorted(ids) == sorted(a for a, _ in answers)
    assert report.overall.correct == 6 and not (tmp_path / "run" / "report.json.tmp").exists()
    assert run_eval(config, Scripted(outputs)).overall.n == 6  # all done: nothing asked again
    with pytest.raises(ValueError, match="other settings \\(scoring differ\\)"):
        run_eval(EvalConfig("videomme", data, out=tmp_path / "run", scoring="generate"), Scripted(outputs))


def test_report_json_and_plot(layouts, tmp_path):
    data, answers = layouts["nextqa"]
    report, _ = _run(tmp_path, "nextqa", data, {qid: letter for qid, letter in answers}, plot=True)
    assert report.to_json() == json.loads((tmp_path / "nextqa" / "report.json").read_text())
    saved = json.loads((tmp_path / "nextqa" / "report.json").read_text())
    assert saved["overall"]["accuracy"] == 1.0 and saved["overall"]["ci_low"] == pytest.approx(wilson(4, 4)[0])
    assert saved["settings"]["model"] == "scripted" and set(saved["groups"]) == {"family", "type"}
    assert (tmp_path / "nextqa" / "accuracy.png").stat().st_size > 1000


def test_bad_layouts_are_one_line_errors(tmp_path, layouts):
    with pytest.raises(FileNotFoundError, match="no videomme/test-.*Video-MME needs"):
        load_questions(EvalConfig("videomme", tmp_path))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_questions(EvalConfig("mvbench", tmp_path / "missing"))
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "not_a_task.json").write_text("[]")
    with pytest.raises(ValueError, match="'not_a_task' is not an MVBench task"):
        load_questions(EvalConfig("mvbench", tmp_path))
    data, _ = layouts["longvideobench"]
    with pytest.raises(FileNotFoundError, match="video .*nowhere.* not found"):
        load_questions(EvalConfig("longvideobench", data, videos=tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="limit must be >= 1"):
        EvalConfig("videomme", tmp_path, limit=0)
