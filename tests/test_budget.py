"""Token-budget plug-ins: contracts checked over the whole registry (seeded property loops), golden examples
computed by hand, and the pipeline end to end on tiny Qwen3 and Gemma3 models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tokenizer, random_image, tiny_model

from tempflex.budget import (
    REGISTRY,
    BudgetError,
    BudgetPipeline,
    BudgetSpec,
    VisualTokens,
    available,
    build,
    register,
    segment_relevance,
)
from tempflex.budget.ata import AdaptiveAllocation
from tempflex.budget.pipeline import encode_clip, fit
from tempflex.budget.prompt import frame_tags
from tempflex.budget.scores import proportional, split, spread, strided, temporal_change
from tempflex.budget.timestamps import FrameTags, SegmentTags
from tempflex.media import VideoClip

TEXTS = ("qwen3", "gemma3")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one intra-op thread


# ----------------------------------------------------------------------------------------------------- helpers
def make_tokens(frames: int, h: int, w: int, dim: int = 8, seed: int = 0, static: float = 0.0) -> VisualTokens:
    """Random (T*h*w, dim) tokens; with ``static`` > 0 each frame repeats the previous one at that fraction of
    its places (so drop has something to drop). Frame t is at t * 0.5 s."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames, h * w, dim, generator=g)  # (T, h*w, E)
    for t in range(1, frames):
        same = torch.rand(h * w, generator=g) < static
        x[t, same] = x[t - 1, same]
    return VisualTokens.from_features(x.reshape(-1, dim), [frames, 2 * h, 2 * w], 2, [0.5 * t for t in range(frames)])


def from_rows(rows: list[list[list[float]]]) -> VisualTokens:
    """Tokens from nested lists: rows[t][i] is token i (raster order on a 1 x n grid) of frame t."""
    x = torch.tensor(rows, dtype=torch.float32)  # (T, n, E)
    t, n, e = x.shape
    return VisualTokens.from_features(x.reshape(-1, e), [t, 2, 2 * n], 2, [float(i) for i in range(t)])


def original_at(tokens: VisualTokens, out: VisualTokens) -> torch.Tensor:
    """Index in ``tokens`` of every token of ``out``, by recorded position."""
    t, r, c = out.positions.unbind(dim=1)
    return tokens.frame_index()[t, r, c]


def assert_subset(tokens: VisualTokens, out: VisualTokens, merges: bool = False) -> None:
    """Kept at recorded positions of the input, in order; original tokens unless the reducer merges (averages)."""
    index = original_at(tokens, out)
    assert bool((index >= 0).all())
    if not merges:
        assert torch.equal(out.tokens, tokens.tokens[index])
    assert torch.equal(out.timestamps, tokens.timestamps[index])
    assert bool((out.keys[1:] > out.keys[:-1]).all())  # (t, h, w) order


def keys(out: VisualTokens) -> list[int]:
    return out.keys.tolist()


# ------------------------------------------------------------------------------------------ registry and types
def test_registry_holds_the_builtins():
    assert available("reducer") == ["ata", "bvllm", "date", "drop", "f2c", "flux", "holitom", "kffocus", "scenetilling",
                                    "tome", "uniform"]
    assert available("selector") == ["dynamic", "uniform"]
    assert available("allocator") == ["even", "tempo", "waterfill"]
    assert available("timestamps") == ["frame", "none", "segment"]


def test_build_errors_are_one_clear_budget_error():
    with pytest.raises(BudgetError, match=r"unknown reducer 'fluxx'; available: ata, bvllm, date, drop, f2c, flux, holitom, kffocus, scenetilling, tome, uniform"):
        build("reducer", "fluxx")
    with pytest.raises(BudgetError, match=r"reducer 'flux' has no option 'group'; options: groups, p"):
        build("reducer", "flux", group=2)
    with pytest.raises(BudgetError, match=r"reducer 'flux': groups must be >= 1"):
        build("reducer", "flux", groups=0)
    with pytest.raises(BudgetError, match="unknown plug-in kind"):
        available("reducers")


def test_a_new_plugin_registers_and_runs_through_the_spec():
    @register("reducer", "first-k")
    class FirstK:
        def reduce(self, tokens, budget, *, scores=None):
            return tokens.select(torch.arange(min(budget, len(tokens))))

    try:
        pipeline = BudgetPipeline.from_spec("first-k:7")
        tokens = make_tokens(3, 2, 2)
        assert keys(pipeline.reducer.reduce(tokens, 7)) == list(range(7))
        with pytest.raises(ValueError, match="already registered"):
            register("reducer", "first-k")(type("Other", (), {}))
    finally:
        del REGISTRY["reducer"]["first-k"]


def test_visual_tokens_validate_and_select_in_order():
    tokens = make_tokens(3, 2, 2)
    assert len(tokens) == 12 and tokens.grid == (2, 2)
    sub = tokens.select([7, 1, 7, 4])
    assert keys(sub) == [1, 4, 7]
    assert sub.tokens_per_frame().tolist() == [1, 2, 0]
    assert sub.frame_timestamps()[:2] == [0.0, 0.5] and math.isnan(sub.frame_timestamps()[2])
    with pytest.raises(ValueError, match="order"):
        VisualTokens(tokens.tokens[:2], tokens.positions[[1, 0]], tokens.timestamps[:2], 3, (2, 2))
    with pytest.raises(ValueError, match="outside"):
        VisualTokens(tokens.tokens[:1], torch.tensor([[3, 0, 0]]), tokens.timestamps[:1], 3, (2, 2))


# ------------------------------------------------------------------------------------------------- helpers' maths
def test_split_quotas_and_spreads():
    assert split(5, 2) == [range(3), range(3, 5)]  # odd frame count: the longer group first
    assert split(2, 4) == [range(1), range(1, 2)]
    assert proportional(3, [4, 4]) == [2, 1]  # remainder to the earlier group
    assert proportional(7, [6, 4]) == [4, 3]  # 4.2 and 2.8: the larger remainder wins
    assert spread(5, [4, 4, 4]) == [1, 2, 2]
    assert spread(6, [1, 5, 5]) == [1, 2, 3]  # 2 each; the 1 the capped part cannot take goes to a later part
    assert strided(4, 2) == [1, 3] and strided(10, 4) == [1, 3, 6, 8]


# ------------------------------------------------------------------------------- reducers: contract over registry
def _random_case(seed: int) -> tuple[VisualTokens, int, np.random.Generator]:
    rng = np.random.default_rng(seed)
    tokens = make_tokens(int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                         dim=int(rng.choice([3, 8])), seed=seed, static=float(rng.choice([0.0, 0.7])))
    if rng.random() < 0.3:  # an already reduced input: positions no longer a full grid
        tokens = tokens.select(torch.from_numpy(rng.random(len(tokens)) < 0.6))
    return tokens, int(rng.integers(0, len(tokens) + 4)), rng


@pytest.mark.parametrize("name", available("reducer"))
def test_every_reducer_keeps_a_subset_within_budget(name):
    reducer = build("reducer", name)
    for seed in range(100):
        tokens, budget, rng = _random_case(seed)
        if not len(tokens):
            continue
        scores = None
        if hasattr(reducer, "segments"):  # query-aware: one score per segment
            scores = torch.from_numpy(rng.normal(size=len(reducer.segments(tokens.frames)))).float()
        try:
            out = reducer.reduce(tokens, budget, scores=scores)
        except BudgetError as err:  # only ata may refuse: a budget below its per-segment minimum
            assert name == "ata" and "below the minimum" in str(err)
            continue
        assert len(out) <= budget
        assert_subset(tokens, out, merges=getattr(reducer, "merges", False))
        assert bool(torch.isfinite(out.tokens).all())
        if name in ("flux", "uniform"):
            assert len(out) == min(budget, len(tokens))


def test_reducers_reject_a_negative_budget():
    for name in available("reducer"):
        with pytest.raises(BudgetError, match="budget"):
            build("reducer", name).reduce(make_tokens(2, 1, 2), -1)


# -------------------------------------------------------------------------------------------------------- flux
FLUX_ROWS = [[[0.0], [0.0]], [[1.0], [0.0]], [[1.0], [5.0]], [[4.0], [5.0]]]  # 4 frames of 2 one-d tokens


def test_flux_scores_by_hand():
    tokens = from_rows(FLUX_ROWS)
    # frame 0 takes its change to frame 1 (FluxViT's code does so for a group's first frame)
    assert temporal_change(tokens).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0, 5.0, 3.0, 0.0]


@pytest.mark.parametrize(("budget", "expected"), [(3, [0, 2, 5]), (5, [0, 1, 2, 5, 6]), (8, list(range(8)))])
def test_flux_golden(budget, expected):
    # groups {frames 0,1} scores [1,0,1,0], {frames 2,3} scores [0,5,3,0]; K=3 -> quotas [2,1] (remainder to the
    # earlier group); K=5 -> [3,2], the tied zeros of group 0 broken towards the earlier token
    out = build("reducer", "flux", groups=2).reduce(from_rows(FLUX_ROWS), budget)
    assert keys(out) == expected


def test_flux_odd_frame_counts_give_unequal_groups_and_exact_k():
    tokens = make_tokens(5, 2, 2, seed=3)
    out = build("reducer", "flux", groups=2).reduce(tokens, 10)
    per_frame = out.tokens_per_frame().tolist()
    assert len(out) == 10
    assert sum(per_frame[:3]) == 6 and sum(per_frame[3:]) == 4  # 12 and 8 tokens in groups of 3 and 2 frames


def test_first_frame_and_single_frame_scores_are_finite_and_proper():
    tokens = make_tokens(3, 2, 2, seed=1)
    change = temporal_change(tokens)
    x = tokens.tokens.reshape(3, 4, -1)
    assert torch.allclose(change[:4], (x[1] - x[0]).norm(dim=-1))
    single = temporal_change(make_tokens(1, 2, 3, seed=2))
    assert bool(torch.isfinite(single).all()) and len(set(single.tolist())) == 6  # distance to the frame's mean


# -------------------------------------------------------------------------------------------------------- drop
DROP_ROWS = [
    [[1.0, 0.0], [0.0, 1.0]],
    [[1.0, 0.01], [1.0, 0.0]],  # cos 0.99995 (dropped), cos 0 (kept)
    [[1.0, 0.02], [1.0, 0.0]],  # cos 0.99995, cos 1: both dropped
]


@pytest.mark.parametrize(("budget", "expected"), [(10, [0, 1, 3]), (2, [0, 1]), (1, [1])])
def test_drop_threshold_golden(budget, expected):
    # the first frame is kept whole; under budget 1 its token that changes most towards frame 1 (1 - cos = 1) wins
    out = build("reducer", "drop", threshold=0.9).reduce(from_rows(DROP_ROWS), budget)
    assert keys(out) == expected


def test_drop_ratio_keeps_the_most_changed():
    out = build("reducer", "drop", mode="ratio", ratio=0.25).reduce(from_rows(DROP_ROWS), 10)
    assert keys(out) == [0, 1, 3]  # first frame + ceil(0.25 * 4) = 1 token, the one that changed most


# ------------------------------------------------------------------------------------------------------ uniform
def test_uniform_golden_and_even():
    out = build("reducer", "uniform").reduce(make_tokens(3, 2, 2), 5)
    assert keys(out) == [2, 5, 7, 9, 11]  # counts [1, 2, 2]; strided places [2], [1, 3], [1, 3]
    for seed in range(10):
        tokens = make_tokens(6, 3, 3, seed=seed)
        counts = build("reducer", "uniform").reduce(tokens, 5 + 7 * seed).tokens_per_frame()
        assert int(counts.max() - counts.min()) <= 1


# ---------------------------------------------------------------------------------------------------- allocators
@pytest.mark.parametrize("spec", [("waterfill", {}), ("waterfill", {"weighting": "softmax", "temperature": 0.5}),
                                  ("waterfill", {"weighting": "linear"}), ("even", {})])
def test_allocation_contract(spec):
    allocator = build("allocator", spec[0], **spec[1])
    rng = np.random.default_rng(0)
    for _ in range(150):
        s = int(rng.integers(1, 12))
        lo = int(rng.integers(0, 4))
        hi = lo + int(rng.integers(0, 7))
        scores = rng.normal(size=s) * 3
        if rng.random() < 0.4:
            scores = np.round(scores)  # ties
        scores = torch.tensor(np.abs(scores) if spec[1].get("weighting") == "linear" else scores)
        budget = int(rng.integers(s * lo, s * hi + 1))
        counts = allocator.allocate(scores, budget, lo, hi)
        assert counts.dtype == torch.long and int(counts.sum()) == budget
        assert int(counts.min()) >= lo and int(counts.max()) <= hi
        higher = scores[:, None] > scores[None, :]  # (S, S): i scores above j
        assert not bool((higher & (counts[:, None] < counts[None, :])).any())  # never fewer for a higher score
        assert allocator.allocate(scores, s * hi + 5, lo, hi).tolist() == [hi] * s
        if lo:
            with pytest.raises(BudgetError, match=f"budget {s * lo - 1} is below the minimum {s * lo}"):
                allocator.allocate(scores, s * lo - 1, lo, hi)


def test_waterfill_golden():
    # minmax weights [0, 1/3, 2/3, 1]: the top is capped at 4, the level rises to 5 -> shares [1, 5/3, 10/3, 4]
    # -> floors [1, 1, 3, 4] and the one left over to the largest remainder (2/3)
    waterfill = build("allocator", "waterfill")
    assert waterfill.allocate(torch.tensor([0.0, 1.0, 2.0, 3.0]), 10, 1, 4).tolist() == [1, 2, 3, 4]
    softmax = build("allocator", "waterfill", weighting="softmax")
    assert softmax.allocate(torch.tensor([0.0, math.log(3.0)]), 8, 0, 8).tolist() == [2, 6]  # weights 1 : 3


def test_ata_spends_the_allocation():
    tokens = make_tokens(8, 2, 2, seed=4)
    ata = AdaptiveAllocation(segment_frames=2)  # 4 segments of 2 frames: 1..8 tokens each
    out = ata.reduce(tokens, 12, scores=torch.tensor([0.0, 3.0, 1.0, 2.0]))
    assert len(out) == 12
    per_segment = out.tokens_per_frame().reshape(4, 2).sum(dim=1).tolist()
    assert per_segment == [1, 5, 2, 4]  # waterfill over minmax weights [0, 1, 1/3, 2/3]
    with pytest.raises(BudgetError, match="below the minimum 4"):
        ata.reduce(tokens, 3)
    with pytest.raises(BudgetError, match="one score per segment"):
        ata.reduce(tokens, 12, scores=torch.zeros(3))


# ---------------------------------------------------------------------------------------------------- selectors
def test_frame_selectors():
    uniform = build("selector", "uniform")
    assert uniform.select(10, 4) == [1, 3, 6, 8]
    assert uniform.select([0.0, 0.5, 1.0], 5) == [0, 1, 2]
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    frames[2:4] = 100  # changes of 100 at frames 2 and 4 (back to black), of 250 at frame 6
    frames[6:] = 250
    dynamic = build("selector", "dynamic", groups=2)
    assert dynamic.select(8, 2, frames=frames) == [2, 6]  # the most changing frame of each half
    with pytest.raises(BudgetError, match="needs the decoded frames"):
        dynamic.select(8, 2)
    with pytest.raises(BudgetError, match="positive"):
        uniform.select(8, 0)


# --------------------------------------------------------------------------------------------------- timestamps
def test_timestamp_tags_and_their_cost():
    tok = make_tokenizer()
    tags = FrameTags().tags([0.0, 1.5, math.nan])
    assert tags == ["<t=0.0s>", "<t=1.5s>", ""]
    assert FrameTags().count(tok, tags) == sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in tags[:2])
    assert SegmentTags(seconds=2.0).tags([0.0, 0.5, 1.9, 2.0, 5.5]) == ["<t=0.0s>", "", "", "<t=2.0s>", "<t=4.0s>"]
    assert build("timestamps", "none").count(tok, build("timestamps", "none").tags([1.0])) == 0


@pytest.mark.parametrize("name", available("reducer"))
def test_fit_keeps_visual_plus_tags_within_budget(name):
    tok = make_tokenizer()
    reducer = build("reducer", name)
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        tokens = make_tokens(int(rng.integers(1, 9)), 2, int(rng.integers(1, 4)), seed=seed, static=0.5)
        encoder = [FrameTags(), SegmentTags(seconds=1.0)][seed % 2]

        def overhead(kept, encoder=encoder):
            return encoder.count(tok, frame_tags(encoder, kept))

        budget = int(rng.integers(1, len(tokens) + 8 * tokens.frames + 2))
        try:
            out = fit(tokens, lambda v, tokens=tokens: reducer.reduce(tokens, v), budget, overhead)
        except BudgetError as err:
            assert "below the minimum" in str(err)
            continue
        assert len(out) >= 1 and len(out) + overhead(out) <= budget
        assert_subset(tokens, out, merges=getattr(reducer, "merges", False))


# ------------------------------------------------------------------------------------------------------- specs
def test_spec_strings_and_dicts():
    spec = BudgetSpec.parse("drop:512,mode=ratio,ratio=0.3,select=dynamic,frames=32,select.groups=2")
    assert spec.reducer == "drop" and spec.budget == 512 and spec.frames == 32 and spec.selector == "dynamic"
    assert spec.reducer_options == {"mode": "ratio", "ratio": 0.3} and spec.selector_options == {"groups": 2}
    assert BudgetSpec.from_dict(spec.model_dump()) == spec  # a model config can carry it as a dict
    pipeline = BudgetPipeline.from_spec(BudgetSpec.parse("ata:2048,segment_frames=8,timestamps=frame,allocator.weighting=softmax"))
    assert pipeline.reducer.segment_frames == 8 and pipeline.reducer.allocator.weighting == "softmax"
    assert isinstance(pipeline.timestamps, FrameTags)


@pytest.mark.parametrize(("text", "message"), [
    ("flux:0", "budget must be a positive number of tokens, got 0"),
    ("flux:-5", "budget must be a positive number of tokens, got -5"),
    ("flux", "has no budget"),
    ("fluxx:100", "unknown reducer 'fluxx'; available: ata, bvllm, date, drop, f2c, flux, holitom, kffocus, scenetilling, tome, uniform"),
    ("flux:100,gropus=2", "reducer 'flux' has no option 'gropus'"),
    ("flux:100,allocator=even", "reducer 'flux' has no option 'allocator'"),
    ("flux:100,timestamps=every", "unknown timestamps 'every'"),
    ("flux:100,groups", "not key=value"),
    ("flux:100,frames=0", "frames must be a positive number"),
    ("", "empty"),
])
def test_bad_specs_give_one_clear_error(text, message):
    with pytest.raises(BudgetError, match=message):
        BudgetPipeline.from_spec(text)


@pytest.mark.parametrize("budget", [0, -3, True, 2.5])
def test_bad_budgets(budget):
    with pytest.raises(BudgetError, match="budget must be a positive number of tokens"):
        BudgetPipeline(build("reducer", "flux"), budget)


# ------------------------------------------------------------------------------------------ pipeline, tiny models
@pytest.fixture(scope="module", params=TEXTS)
def tiny(request):
    model, processor = tiny_model(request.param, video_timestamps=True)
    return request.param, model, processor


@pytest.fixture(scope="module")
def qwen():
    return tiny_model("qwen3", video_timestamps=True)


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    frames = np.stack([random_image(rng, 96, 128) for _ in range(5)])  # 3 x 4 = 12 merged tokens a frame
    frames[2] = frames[1]  # a static frame for drop
    return VideoClip(frames, [0.0, 0.5, 1.0, 1.5, 2.0])


@pytest.mark.parametrize("spec", ["flux:40", "drop:45", "uniform:30,timestamps=none", "ata:50,segment_frames=2",
                                  "flux:30,timestamps=segment,timestamps.seconds=1,count_separators=true"])
def test_pipeline_end_to_end(tiny, clip, spec):
    _, model, processor = tiny
    inputs, info = BudgetPipeline.from_spec(spec).prepare(model, processor, clip, "What happens?")
    ids = inputs["input_ids"]
    assert info["total"] <= info["budget"]
    assert info["visual_tokens"] == int((ids == processor.video_token_id).sum()) == sum(info["tokens_per_frame"])
    assert info["separator_tokens"] == sum(1 for k in info["tokens_per_frame"] if k)
    assert len(info["positions"]) == info["visual_tokens"]
    assert inputs["inputs_embeds"].shape == (*ids.shape, model.config.text_hidden)
    # the ids equal the processor's way (one string, tokenized whole)
    assert ids[0].tolist() == processor.tokenizer(info["text"], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(**inputs).logits
    assert bool(torch.isfinite(logits).all())
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3 or int(out[0, -1]) == model.generation_config.eos_token_id


@pytest.mark.parametrize("reducer", available("reducer"))
def test_pipeline_budget_always_holds(qwen, clip, reducer):
    model, processor = qwen  # one LLM is enough for the budget arithmetic
    for budget in (9, 10, 13, 21, 37, 52, 64, 100, 500):
        for tags in ("frame", "segment,timestamps.seconds=1", "none"):
            pipeline = BudgetPipeline.from_spec(f"{reducer}:{budget},timestamps={tags},count_separators=true")
            try:
                inputs, info = pipeline.prepare(model, processor, clip, "What happens?")
            except BudgetError as err:
                assert "below the minimum" in str(err)
                continue
            spent = info["visual_tokens"] + info["tag_tokens"] + info["separator_tokens"]
            assert info["total"] == spent <= budget
            assert int((inputs["input_ids"] == processor.video_token_id).sum()) == info["visual_tokens"] >= 1


def test_pipeline_kept_tokens_are_the_encoded_ones(tiny, clip):
    _, model, processor = tiny
    inputs, info = BudgetPipeline.from_spec("flux:50,groups=2").prepare(model, processor, clip, "Q")
    full = encode_clip(model, processor, clip)
    t, r, c = torch.tensor(info["positions"]).unbind(dim=1)
    mask = inputs["input_ids"] == processor.video_token_id
    assert torch.equal(inputs["inputs_embeds"][mask], full.tokens[full.frame_index()[t, r, c]])
    assert info["timestamps"] == [clip.timestamps[i] for i in t.tolist()]


def test_pipeline_with_the_whole_budget_equals_the_processor_path(tiny, clip):
    _, model, processor = tiny
    inputs, info = BudgetPipeline.from_spec("uniform:10000").prepare(model, processor, clip, "What happens?")
    reference = processor(processor.apply_chat_template([{"role": "user", "content": "<video>\nWhat happens?"}]),
                          videos=[clip])
    assert torch.equal(inputs["input_ids"], reference["input_ids"])
    assert info["tag_tokens"] == 5 * 8  # "<t=0.0s>" is 8 tokens under the tiny byte-level BPE
    with torch.no_grad():
        ours, theirs = model(**inputs).logits, model(**reference).logits
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize(("query", "slots", "span"), [(False, 0, 0), (True, 0, 0), (False, 4, 0), (True, 4, 8)])
def test_pipeline_word_bridge_reads_only_the_kept_tokens(clip, query, slots, span):
    """With a word bridge (tempflex-tiny has one) the LLM gets the kept tokens plus the word read from them
    alone (and from the prompt, when it reads prompts; in their places on the frame, when it keeps places apart),
    so a small budget cannot smuggle the whole video in; the whole budget is the processor's path."""
    model, processor = tiny_model("gemma3", video_timestamps=True, bridge={"query": query, "slots": slots, "span": span})
    model.eval()
    if query:
        with torch.no_grad():
            model.bridge.ask[1].weight.normal_()  # the prompt steers the word (zero at insertion)
    inputs, info = BudgetPipeline.from_spec("flux:30,timestamps=none").prepare(model, processor, clip, "Q")
    raw = encode_clip(model, processor, clip)  # before the bridge
    t, r, c = torch.tensor(info["positions"]).unbind(dim=1)
    kept = raw.tokens[raw.frame_index()[t, r, c]]  # (V, E)
    mask = inputs["input_ids"] == processor.video_token_id
    ids = inputs["input_ids"][0]  # (L,)
    places = r * raw.grid[1] + c
    torch.testing.assert_close(inputs["inputs_embeds"][mask], model.apply_bridge(kept, t, places=places, input_ids=ids))
    if slots:  # the places matter: the same tokens in the first places of their frames say another word
        with torch.no_grad():
            model.bridge.standardise.running_var.fill_(1e-4)
        assert not torch.allclose(model.apply_bridge(kept, t, places=places, input_ids=ids),
                                  model.apply_bridge(kept, t, input_ids=ids))
    whole, _ = BudgetPipeline.from_spec("uniform:10000").prepare(model, processor, clip, "What happens?")
    reference = processor(processor.apply_chat_template([{"role": "user", "content": "<video>\nWhat happens?"}]),
                          videos=[clip])
    with torch.no_grad():
        torch.testing.assert_close(model(**whole).logits, model(**reference).logits, atol=1e-5, rtol=1e-5)
    scores = segment_relevance(model, processor, raw, [range(2), range(2, 5)], "Is there a dog?")
    assert scores.shape == (2,) and bool(torch.isfinite(scores).all())


def test_model_generate_takes_the_pipeline_inputs(tiny, clip):
    """generate() from the spliced embeddings equals the bare LLM generating from the same embeddings."""
    _, model, processor = tiny
    inputs, _ = BudgetPipeline.from_spec("flux:40").prepare(model, processor, clip, "What happens?")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    bare = model.language_model.generate(**inputs, max_new_tokens=3, do_sample=False,
                                         pad_token_id=model.generation_config.pad_token_id)
    assert torch.equal(out, bare)



def test_relevance_scores_batched_equal_one_by_one(tiny, clip, monkeypatch, capsys):
    _, model, processor = tiny
    tokens = encode_clip(model, processor, clip)
    segments = AdaptiveAllocation(segment_frames=2).segments(tokens.frames)
    batched = segment_relevance(model, processor, tokens, segments, "Is there a dog?")
    monkeypatch.setattr("tempflex.budget.relevance.PROGRESS_FROM", 2)  # one by one: 3 batches, with a progress bar
    single = segment_relevance(model, processor, tokens, segments, "Is there a dog?", batch_size=1)
    assert batched.shape == (3,) and bool(torch.isfinite(batched).all())
    assert torch.allclose(batched, single, atol=1e-4)
    assert capsys.readouterr().out == ""  # the bar goes to stderr: stdout may carry JSON


def test_pipeline_selects_frames_first(tiny, clip):
    _, model, processor = tiny
    pipeline = BudgetPipeline.from_spec("flux:30,select=dynamic,frames=3,timestamps=none")
    _, info = pipeline.prepare(model, processor, clip, "Q")
    assert len(info["frames"]) == 3 and len(info["tokens_per_frame"]) == 3
    assert info["visual_tokens"] == 30


def test_pipeline_bad_input(tiny, clip):
    _, model, processor = tiny
    with pytest.raises(BudgetError, match="budget 5 is below the minimum 9"):  # one token + its 8-token tag
        BudgetPipeline.from_spec("flux:5").prepare(model, processor, clip, "Q")
    with pytest.raises(BudgetError, match="budget 12 leaves .* below the minimum"):  # ata: 3 segments x 2 tokens
        BudgetPipeline.from_spec("ata:12,segment_frames=2,min_per_frame=2").prepare(model, processor, clip, "Q")
    with pytest.raises(BudgetError, match="one video"):
        BudgetPipeline.from_spec("flux:40").prepare(model, processor, clip, "<image> Q")
