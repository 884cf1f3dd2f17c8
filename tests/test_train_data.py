"""Training data: records, mixtures, label masking, the dataset's length rules, collate, sampler, data check."""

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from typer.testing import CliRunner

from tempflex.cli import app
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.train.check import check_mixture
from tempflex.train.collate import LengthGroupedSampler, collate
from tempflex.train.data import ConversationDataset, sample_mixture
from tempflex.train.records import RecordError, load_mixture, parse_record
from tempflex.train.tokenize import chat_segments, encode_conversation
from tempflex.train.toy import make_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("tiny"))


def _processor(template: bool = True, **overrides) -> TempFlexProcessor:
    config, tokenizer = tiny_config("qwen3", chat_template=template, **overrides)
    return TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))


def conv(*pairs):
    turns = []
    for q, a in pairs:
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    return turns


# -- records -----------------------------------------------------------------------------------------------------
def test_record_gets_llava_placeholder_when_none_is_written(tmp_path):
    rec = parse_record({"image": "a.png", "conversations": conv(("What is it?", "A cat."))}, tmp_path, "d", 0)
    assert rec.images == (tmp_path / "a.png",) and rec.turns[0].text == "<image>\nWhat is it?"


@pytest.mark.parametrize(
    "raw, reason",
    [
        ({"conversations": []}, "non-empty list"),
        ({"conversations": conv(("q", "a"))[:1]}, "alternate"),
        ({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}, "alternate"),
        ({"conversations": [{"from": "robot", "value": "q"}]}, "unknown role 'robot'"),
        ({"conversations": conv(("  ", "a"))}, "turn 0 is empty"),
        ({"image": ["a.png", "b.png"], "conversations": conv(("<image> one", "a"))},
         "1 <image> placeholder but 2 images were given"),
        ({"conversations": conv(("<video> q", "a"))}, "1 <video> placeholder but 0 videos were given"),
        ({"image": "a.png", "conversations": conv(("<image> q", "see <image>"))}, "must be in user turns"),
        ("line 3: invalid JSON (Expecting value)", "invalid JSON"),
    ],
)
def test_bad_records_name_the_reason(tmp_path, raw, reason):
    with pytest.raises(RecordError, match=reason):
        parse_record(raw, tmp_path, "d", 0)


def test_mixture_weights_counts_and_errors(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "conversations": conv(("q", "a"))}) + "\n" for i in range(10)))
    (tmp_path / "m.yaml").write_text("datasets:\n  - {name: a, path: d.jsonl, weight: 0.5}\n"
                                     "  - {name: b, path: d.jsonl, count: 23}\n")
    records = sample_mixture(load_mixture(tmp_path / "m.yaml"), seed=0)
    assert sum(r.source == "a" for r in records) == 5 and sum(r.source == "b" for r in records) == 23
    assert [r.id for r in records] == [r.id for r in sample_mixture(load_mixture(tmp_path / "m.yaml"), seed=0)]
    (tmp_path / "bad.yaml").write_text("datasets:\n  - {name: a, path: d.jsonl, wieght: 2}\n")
    with pytest.raises(ValueError, match=r"datasets\.0\.wieght"):
        load_mixture(tmp_path / "bad.yaml")
    (tmp_path / "both.yaml").write_text("datasets:\n  - {name: a, path: d.jsonl, weight: 1, count: 2}\n")
    with pytest.raises(ValueError, match="weight or count, not both"):
        load_mixture(tmp_path / "both.yaml")
    with pytest.raises(FileNotFoundError):
        load_mixture(tmp_path / "nope.yaml")


# -- labels ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", [True, False])
def test_labels_cover_exactly_the_answers(template, rng):
    proc = _processor(template)
    messages = [{"role": "user", "content": "<image> what is it?"}, {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "and now?"}, {"role": "assistant", "content": "a red ball"}]
    media = proc.encode_media([rng.integers(0, 256, (64, 64, 3), dtype="uint8")])
    enc = encode_conversation(proc, messages, media)
    tok = proc.tokenizer
    target = tok.decode(enc.input_ids[enc.labels != -100])
    if template:
        assert target == "a cat<|end|>\na red ball<|end|>\n"
    else:  # "Assistant: a cat": the space after the colon belongs to the answer; EOS teaches the stop
        assert target == f" a cat{tok.eos_token} a red ball{tok.eos_token}"
    assert int((enc.input_ids == proc.image_token_id).sum()) == 4
    assert bool((enc.labels[enc.input_ids == proc.image_token_id] == -100).all())
    whole = "".join(t for t, _ in chat_segments(proc, messages))
    assert whole == proc.apply_chat_template(messages, add_generation_prompt=False)


@pytest.mark.parametrize("template", [True, False])
def test_answer_tokens_label_only_each_answers_first_tokens(template, rng):
    """``data.answer_tokens: 1``: the loss falls on the word a multiple-choice answer is scored on, not on the
    end-of-turn text after it; the inputs are the same."""
    proc = _processor(template)
    messages = [{"role": "user", "content": "<image> what is it?"}, {"role": "assistant", "content": "cat"},
                {"role": "user", "content": "and now?"}, {"role": "assistant", "content": "a red ball"}]
    media = proc.encode_media([rng.integers(0, 256, (64, 64, 3), dtype="uint8")])
    whole = encode_conversation(proc, messages, media)
    first = encode_conversation(proc, messages, media, answer_tokens=1)
    assert torch.equal(first.input_ids, whole.input_ids)
    labelled = (first.labels != -100).nonzero()[:, 0]
    assert len(labelled) == 2 and torch.equal(first.labels[labelled], whole.input_ids[labelled])
    starts = [i for i in (whole.labels != -100).nonzero()[:, 0].tolist() if whole.labels[i - 1] == -100]
    assert labelled.tolist() == starts  # the first labelled token of each answer
    two = encode_conversation(proc, messages, media, answer_tokens=2)
    assert int((two.labels != -100).sum()) == 4


def test_template_that_is_not_prefix_stable_is_refused():
    proc = _processor()
    proc.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ messages|length }}"
    with pytest.raises(ValueError, match="prefix-stable"):
        chat_segments(proc, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])


# -- the dataset -------------------------------------------------------------------------------------------------
def _dataset(tiny_data, stage=4, **kw):
    proc = _processor(video_max_tokens_per_frame=16)
    return ConversationDataset(tiny_data / "mixtures" / f"stage{stage}.yaml", proc, **{"max_length": 2048,
                                                                                       "num_frames": 6, **kw})


def test_dataset_examples_from_real_media(tiny_data):
    ds = _dataset(tiny_data)
    assert len(ds) == 24 and len(ds.lengths) == 24
    videos = [ds[i] for i in range(len(ds)) if ds.records[i].videos]
    ex = videos[0]
    t, h, w = ex["video_grid_thw"][0].tolist()
    assert t == 6 and ex["num_visual_tokens"] == t * h * w // 4
    assert ex["pixel_values_videos"].shape == (t * h * w, 768)
    assert (ex["labels"] != -100).sum() > 0 and len(ex["input_ids"]) == len(ex["labels"])


def _visual_end(proc, ids):
    visual = torch.isin(ids, torch.tensor([proc.image_token_id, proc.video_token_id, proc.frame_separator_token_id]))
    return int(visual.nonzero().max()) + 1


def test_too_long_samples_are_shortened_after_the_visuals_or_dropped(tiny_data):
    full = _dataset(tiny_data, stage=3)
    ex = full[0]
    end = _visual_end(full.processor, ex["input_ids"])
    assert len(ex["input_ids"]) > end + 3

    short = _dataset(tiny_data, stage=3, max_length=end + 3)
    assert len(short) == len(full) and short.stats["dropped_too_long"] == 0
    cut = short[0]
    assert len(cut["input_ids"]) == end + 3 and short.stats["shortened"] == 1
    assert torch.equal(cut["input_ids"][:end], ex["input_ids"][:end])  # every visual token kept

    mixed = _dataset(tiny_data, stage=4, max_length=end - 5)  # videos cannot fit, images can
    assert mixed.stats["dropped_too_long"] == 8 and len(mixed) == 16
    assert all(not r.videos for r in mixed.records)
    with pytest.raises(ValueError, match="no sample fits max_length"):
        _dataset(tiny_data, stage=3, max_length=end - 5)


def test_cotrain_budgets_give_one_example_per_budget(tiny_data):
    ds = _dataset(tiny_data, stage=3, cotrain_budgets=[4, 16, 8])
    examples = ds[0]
    tokens = [e["num_visual_tokens"] for e in examples]
    assert len(examples) == 3 and tokens == sorted(tokens, reverse=True) and tokens[0] > tokens[-1]
    answers = [e["input_ids"][e["labels"] != -100].tolist() for e in examples]
    assert answers[0] == answers[1] == answers[2]


def test_flexible_sampling_is_deterministic_per_sample(tiny_data):
    from tempflex.video.flexible import FlexibleSampling

    flex = FlexibleSampling(min_frames=2, max_frames=8, frame_stride=2, min_resolution=64, max_resolution=128,
                            resolution_stride=32, max_tokens=64)
    a, b = _dataset(tiny_data, stage=3, flexible=flex), _dataset(tiny_data, stage=3, flexible=flex)
    grids = [a[i]["video_grid_thw"][0].tolist() for i in range(len(a))]
    assert grids == [b[i]["video_grid_thw"][0].tolist() for i in range(len(b))]
    assert all(t * h * w // 4 <= 64 for t, h, w in grids) and len({tuple(g) for g in grids}) > 1


# -- batching ----------------------------------------------------------------------------------------------------
def test_collate_pads_right_and_concatenates_visuals(tiny_data):
    ds = _dataset(tiny_data)
    examples = [ds[i] for i in range(4)]
    batch = collate(examples, pad_token_id=0)
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape == (4, longest) and batch["labels"].shape == (4, longest)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        assert batch["attention_mask"][row].sum() == n and bool((batch["labels"][row, n:] == -100).all())
    assert batch["num_visual_tokens"] == sum(e["num_visual_tokens"] for e in examples)
    n_img = sum(len(e.get("image_grid_thw", [])) for e in examples)
    assert len(batch.get("image_grid_thw", [])) == n_img
    with pytest.raises(ValueError, match="empty batch"):
        collate([], 0)


def test_length_grouped_sampler_is_deterministic_and_shards_like_one_process():
    lengths = [(i * 37) % 101 for i in range(50)]
    one = LengthGroupedSampler(lengths, 3, seed=1, mega=2, per_step=4)
    assert list(one) == list(LengthGroupedSampler(lengths, 3, seed=1, mega=2, per_step=4))
    one.set_epoch(1)
    epoch1 = list(one)
    one.set_epoch(0)
    assert list(one) != epoch1
    batches = one.micro_batches()
    assert len(batches) == 16 and len({i for b in batches for i in b}) == 48  # 4 steps of 12, 2 samples dropped
    for b in batches:  # grouped: each micro-batch comes from one sorted mega-batch
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)
    # two ranks with accumulation 2 see, step by step, the micro-batches of one rank with accumulation 4
    two = [list(LengthGroupedSampler(lengths, 3, seed=1, mega=2, num_replicas=2, rank=r, per_step=4)) for r in (0, 1)]
    assert [b for pair in zip(*two) for b in pair] == batches
    assert len(two[0]) == len(two[1]) == 8
    # the samples of each step do not depend on the micro-batch size
    def steps(micro: int, per_step: int) -> list[list[int]]:
        batches = LengthGroupedSampler(lengths, micro, seed=1, mega=2, per_step=per_step).micro_batches()
        return [sorted(sum(batches[j : j + per_step], [])) for j in range(0, len(batches), per_step)]

    assert steps(3, 4) == steps(6, 2) == steps(12, 1)
    with pytest.raises(ValueError, match="multiple of 2 ranks"):
        LengthGroupedSampler(lengths, 3, num_replicas=2, per_step=3)


# -- data check --------------------------------------------------------------------------------------------------
def test_data_check_counts_every_kind_of_problem(tmp_path):
    (tmp_path / "ok.png").write_bytes((Path(__file__).parent / "conftest.py").read_bytes())  # not an image
    lines = [
        json.dumps({"conversations": conv(("q", "a"))}),
        "{not json",
        json.dumps({"conversations": [{"from": "bot", "value": "q"}]}),
        json.dumps({"image": ["x.png", "y.png"], "conversations": conv(("<image>", "a"))}),
        json.dumps({"image": "missing.png", "conversations": conv(("q", "a"))}),
        json.dumps({"image": "ok.png", "conversations": conv(("q", "a"))}),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "m.yaml").write_text("datasets:\n  - {name: d, path: d.jsonl}\n")
    [report] = check_mixture(tmp_path / "m.yaml")
    assert report.records == 6 and report.ok == 1
    assert dict(report.problems) == {"malformed": 2, "placeholder_mismatch": 1, "missing_media": 1,
                                     "unreadable_media": 1}
    runner = CliRunner()
    result = runner.invoke(app, ["data", "check", str(tmp_path / "m.yaml"), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)[0]["ok"] == 1
    (tmp_path / "bad.yaml").write_text("datasets: [{name: d, path: d.jsonl, colour: red}]\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "datasets.0.colour" in result.stderr and "Traceback" not in result.output
    (tmp_path / "gone.yaml").write_text("datasets: [{name: d, path: d.jsonl}, {name: g, path: gone.jsonl}]\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "gone.yaml")])
    assert result.exit_code == 2 and "dataset 'g': data file" in result.stderr and "gone.jsonl not found" in result.stderr


def test_binary_mixture_recipe_and_data_lines_are_named(tmp_path):
    (tmp_path / "m.yaml").write_bytes(b"\x00\x01\xff\xfe\x80garbage")
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{tmp_path / 'm.yaml'}: the mixture file is not UTF-8 text (byte 0xff at offset 2)" in result.stderr
    result = CliRunner().invoke(app, ["train", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2 and f"{tmp_path / 'm.yaml'}: the recipe is not UTF-8 text" in result.stderr
    (tmp_path / "d.jsonl").write_bytes(json.dumps({"conversations": conv(("q", "a"))}).encode() + b"\n\xff\xfe\n")
    (tmp_path / "ok.yaml").write_text("datasets: [{name: d, path: d.jsonl}]\n")
    [report] = check_mixture(tmp_path / "ok.yaml")
    assert report.ok == 1 and report.examples["malformed"] == ["record 2: line 2: not UTF-8 text"]


def test_data_check_passes_the_tiny_set(tiny_data):
    result = CliRunner().invoke(app, ["data", "check", str(tiny_data / "mixtures" / "stage4.yaml")])
    assert result.exit_code == 0, result.output
