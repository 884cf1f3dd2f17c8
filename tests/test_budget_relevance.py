"""Batched segment relevance: one bridge pass and batched LLM forwards give the scores of one pass per segment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_image, tiny_model

from tempflex.bridge import WordBridge
from tempflex.budget import BudgetPipeline, segment_relevance
from tempflex.budget.pipeline import encode_clip, finish
from tempflex.budget.prompt import bridged, bridged_many
from tempflex.budget.relevance import segment_tokens
from tempflex.media import VideoClip

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one intra-op thread


@pytest.fixture(scope="module", params=[(True, 4, 8), (False, 0, 0)], ids=["query-slots-span", "pooled-gru"])
def bridged_model(request):
    """A tiny Gemma3 model with a word bridge that reads the prompt (tempflex-tiny's kind) or not."""
    query, slots, span = request.param
    model, processor = tiny_model("gemma3", video_timestamps=True, bridge={"query": query, "slots": slots,
                                                                           "span": span})
    if query:
        with torch.no_grad():
            model.bridge.ask[1].weight.normal_(generator=torch.Generator().manual_seed(0))  # the prompt matters
    return model.eval(), processor


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(1)
    frames = np.stack([random_image(rng, 96, 128) for _ in range(6)])  # 12 merged tokens a frame
    return VideoClip(frames, [0.5 * t for t in range(6)])


def one_by_one(model, processor, tokens, segments, question, timestamps=None, **_):
    return torch.cat([segment_relevance(model, processor, tokens, [s], question, timestamps=timestamps)
                      for s in segments])


@pytest.mark.parametrize("size", [1, 2, 4])
def test_batched_relevance_equals_one_pass_per_segment(bridged_model, clip, size):
    model, processor = bridged_model
    tokens = encode_clip(model, processor, clip)
    segments = [range(t, min(t + size, tokens.frames)) for t in range(0, tokens.frames, size)]
    loop = one_by_one(model, processor, tokens, segments, "Is there a red circle?")
    for batch in (3, 64):
        batched = segment_relevance(model, processor, tokens, segments, "Is there a red circle?", batch_size=batch)
        assert batched.shape == (len(segments),)
        torch.testing.assert_close(batched, loop, atol=1e-4, rtol=1e-4)


def test_bridged_many_equals_each_bridged(bridged_model, clip):
    model, processor = bridged_model
    tokens = encode_clip(model, processor, clip)
    parts = [segment_tokens(tokens, range(2)), segment_tokens(tokens, range(2, 5)).select(torch.arange(0, 36, 5))]
    prompts = [torch.tensor([5, 6, processor.video_token_id] + [7] * n) for n in (3, 9)]
    many = bridged_many(model, parts, prompts)
    for part, ids, out in zip(parts, prompts, many):
        torch.testing.assert_close(out.tokens, bridged(model, part, ids).tokens, atol=1e-5, rtol=1e-5)
        assert torch.equal(out.positions, part.positions)
    assert not torch.allclose(many[0].tokens, parts[0].tokens)  # the bridge did add a word


@pytest.mark.parametrize("spec", ["ata:40,segment_frames=2", "date:20", "f2c:24,min_frame_tokens=1",
                                  "bvllm:16,frame_tokens=4"])
def test_query_aware_budgets_are_exact_with_batched_relevance(bridged_model, clip, spec, monkeypatch):
    """The pipeline with batched relevance keeps the very tokens it keeps with one pass per segment."""
    model, processor = bridged_model
    pipeline = BudgetPipeline.from_spec(spec)
    _, fast = pipeline.prepare(model, processor, clip, "What moves?")
    import tempflex.budget.pipeline as module

    monkeypatch.setattr(module, "segment_relevance", one_by_one)
    _, slow = pipeline.prepare(model, processor, clip, "What moves?")
    torch.testing.assert_close(torch.tensor(fast["relevance"]), torch.tensor(slow["relevance"]), atol=1e-4,
                               rtol=1e-4)
    assert fast["positions"] == slow["positions"] and fast["visual_tokens"] == slow["visual_tokens"]
    assert fast["total"] <= pipeline.budget


def test_read_many_refuses_an_empty_set(bridged_model, clip):
    model, processor = bridged_model
    tokens = encode_clip(model, processor, clip)
    with pytest.raises(ValueError, match="at least one token"):
        model.bridge.read_many([(tokens.tokens[:0], tokens.positions[:0, 0], None)], model.get_input_embeddings())


def test_a_memo_reuses_encoding_and_relevance_across_pipelines(bridged_model, clip):
    model, processor = bridged_model
    memo: dict = {}
    _, first = BudgetPipeline.from_spec("date:20").prepare(model, processor, clip, "What moves?", memo=memo)
    _, again = BudgetPipeline.from_spec("f2c:24").prepare(model, processor, clip, "What moves?", memo=memo)
    _, alone = BudgetPipeline.from_spec("f2c:24").prepare(model, processor, clip, "What moves?")
    assert first["reused_seconds"] == 0.0 and again["reused_seconds"] > 0.0 and alone["reused_seconds"] == 0.0
    assert again["relevance"] == first["relevance"] and again["positions"] == alone["positions"]
    _, other = BudgetPipeline.from_spec("date:20").prepare(model, processor, clip, "What is red?", memo=memo)
    assert other["relevance"] != first["relevance"]  # another question is scored anew


def test_finish_bridges_several_plans_in_one_read_as_each_prepare_would(bridged_model, clip, monkeypatch):
    model, processor = bridged_model
    specs = ["uniform:12", "flux:24,groups=2", "drop:30,mode=ratio,ratio=1.0", "tome:20"]
    prompt, memo = "<video>\nWhat moves first?", {}
    alone = [BudgetPipeline.from_spec(s).prepare(model, processor, clip, prompt) for s in specs]
    plans = [BudgetPipeline.from_spec(s).plan(model, processor, clip, prompt, memo=memo) for s in specs]
    reads, read_many = [], WordBridge.read_many
    monkeypatch.setattr(WordBridge, "read_many", lambda self, *a, **k: reads.append(1) or read_many(self, *a, **k))
    together = finish(model, processor, plans)
    assert len(reads) == 1  # one pass over the embedding table for the four prompts
    for (inputs, info), (want, want_info) in zip(together, alone):
        assert torch.equal(inputs["input_ids"], want["input_ids"]) and info["positions"] == want_info["positions"]
        torch.testing.assert_close(inputs["inputs_embeds"], want["inputs_embeds"], rtol=1e-5, atol=1e-6)


def load_budget_probes():
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    spec = importlib.util.spec_from_file_location("budget_probes", folder / "budget_probes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("budget_probes", module)
    spec.loader.exec_module(module)
    return module


def test_the_probe_benchmark_log_resumes_and_refuses_a_second_run(tmp_path):
    from tempflex.atomic import OutputLocked, exclusive_output

    bench = load_budget_probes()
    cell = bench.Cell("flux", 2, 16)
    log = bench.CellLog(tmp_path, cell).open()
    log.append({"id": "q1", "x": 1})
    log.append({"id": "q2", "x": 2})
    with log.path.open("a") as f:
        f.write('{"id": "q3", "x"')  # a run killed mid-write
    again = bench.CellLog(tmp_path, cell).open()
    assert list(again.rows) == ["q1", "q2"] and log.path.read_text().endswith('"x": 2}\n')
    again.append({"id": "q3", "x": 3})
    assert list(bench.CellLog(tmp_path, cell).open().rows) == ["q1", "q2", "q3"]
    with pytest.raises(bench.CellMismatch, match="move it away"):
        other = bench.CellLog(tmp_path, cell)
        other.header = {**other.header, "spec": "flux:32,groups=8"}
        other.open()
    held = pytest.raises(OutputLocked, match="in use by another")
    with exclusive_output(log.folder, "run"), held, exclusive_output(log.folder, "run"):  # the lock run_cells takes
        pass
