"""Co-training with the student views selected in the forward (``cotrain.select: flux | mask``,
tempflex.train.select): exact budgets, the inference layout, gradients through the kept tokens, the recipe's errors,
and a run through the engine that resumes exactly."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tempflex.budget.base import VisualTokens
from tempflex.budget.reducers import GroupDynamic
from tempflex.train import cotrain as ct
from tempflex.train.engine import train
from tempflex.train.recipe import RecipeError, parse_recipe
from tempflex.train.select import TokenSelect, batch_videos, row_keep, selected_views

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import TinyConversations, one_thread, parts_for, tiny_recipe

CPU = torch.device("cpu")
BRIDGE = {"slots": 4, "span": 2, "query": True, "query_norm": "batch"}  # tempflex-tiny's bridge, in miniature


def largest_view_parts(tmp: Path, select: str = "flux", budgets=(16, 4, 1), bridge: dict | None = None):
    """A tiny recipe and parts whose dataset gives the largest view alone, as ConversationDataset does with a
    selection; 2-frame videos of 128 px: 16 tokens a frame at budget 16."""
    model = {"tiny": {"text": "qwen3", "config": {"bridge": bridge}}} if bridge else {"tiny": {"text": "qwen3"}}
    recipe = parse_recipe(tiny_recipe(tmp, model=model, cotrain={"budgets": list(budgets), "select": select}))
    parts = parts_for(recipe, videos_only=True)
    parts.dataset = TinyConversations(parts.processor, n=8, budgets=[budgets[0]], videos_only=True)
    return recipe, parts


def batch_of(parts, rows=(0, 1)) -> dict:
    return parts.collate([parts.dataset[i][0] for i in rows])


def test_each_student_sees_exactly_its_budget_in_the_inference_layout(tmp_path: Path) -> None:
    recipe, parts = largest_view_parts(tmp_path)
    model, config = parts.model, parts.model.config
    batch = batch_of(parts)
    views = selected_views(model, batch, [16, 4, 1], TokenSelect("flux"), CPU)
    for budget, view in zip([16, 4, 1], views):
        ids = view["input_ids"]
        assert (ids == config.video_token_id).sum(dim=1).tolist() == [2 * budget, 2 * budget]  # b * T per video
        # the answers are the same tokens in every view, aligned by the label mask
        assert torch.equal(view["labels"][view["labels"] != -100], batch["labels"][batch["labels"] != -100])
        kept_frames = (ids == config.frame_separator_token_id).sum(dim=1)
        assert kept_frames.tolist() == [2, 2]  # flux at 1 a frame on 2 frames: one group each, so one token each
    # the teacher is the model's own forward on the largest view, logits for logits
    model.eval()
    with torch.no_grad():
        teacher = selected_views(model, batch, [16], TokenSelect("flux"), CPU)[0]
        own = model(**ct.model_inputs(batch, CPU)).logits
        mine = model(inputs_embeds=teacher["inputs_embeds"], attention_mask=teacher["attention_mask"]).logits
    torch.testing.assert_close(mine, own)


def test_a_frame_that_keeps_nothing_loses_its_placeholders_separator_and_tag() -> None:
    """Hand case, the pipeline's layout: ids [prefix, tag0, v v, sep, tag1 tag1, v v, sep, suffix]; frame 1 keeps
    nothing, frame 0 one token."""
    from tempflex.train.select import Video

    v, s = 7, 8
    ids = torch.tensor([1, 2, v, v, s, 3, 3, v, v, s, 4])
    video = Video(torch.zeros(4, 2), frames=2, grid=(1, 2), row=0)
    keep = row_keep(ids, [(video, torch.tensor([1]))], v, s)
    assert ids[keep].tolist() == [1, 2, v, s, 4]


def test_select_flux_keeps_what_the_inference_reducer_keeps_and_differs_from_resize(tmp_path: Path) -> None:
    recipe, parts = largest_view_parts(tmp_path)
    model = parts.model
    batch = batch_of(parts)
    video = batch_videos(model, batch, CPU)[0]
    tokens = VisualTokens.from_features(video.tokens.detach(), (2, 8, 8), 2, None)
    assert torch.equal(TokenSelect("flux").keep(video.detached(), 4), GroupDynamic(4).reduce(tokens, 8).keys)
    masked = TokenSelect("mask").keep(video.detached(), 4)
    assert len(masked) == 8 and torch.bincount(masked // 16).tolist() == [4, 4]  # 4 random places a frame
    # the resize view of the same samples at 4 tokens a frame is another input altogether
    resized = parts.collate([TinyConversations(parts.processor, n=8, budgets=[16, 4], videos_only=True)[i][1]
                             for i in (0, 1)])
    model.eval()
    with torch.no_grad():
        flux = selected_views(model, batch, [16, 4], TokenSelect("flux"), CPU)[1]
        logits_flux = ct.answer_forward(model, flux, CPU)[0]
        logits_resize = ct.answer_forward(model, resized, CPU)[0]
    assert logits_flux.shape == logits_resize.shape
    assert not torch.allclose(logits_flux, logits_resize, atol=1e-4)


def test_gradients_reach_encoder_and_merger_through_the_kept_tokens_only(tmp_path: Path) -> None:
    recipe, parts = largest_view_parts(tmp_path, bridge=BRIDGE)
    model = parts.model
    batch = batch_of(parts)
    videos = batch_videos(model, batch, CPU)
    for v in videos:
        v.tokens.retain_grad()
    kept = [TokenSelect("flux").keep(v.detached(), 4) for v in videos]
    from tempflex.train.select import view

    student = view(model, batch, videos, kept, CPU)
    logits, targets = ct.answer_forward(model, student, CPU)
    ct.answer_loss(logits, targets, 10.0).backward()
    for v, k in zip(videos, kept):
        touched = v.tokens.grad.abs().sum(dim=1) > 0  # (T*h*w,)
        assert touched.nonzero().flatten().tolist() == k.tolist()
    for name in ("vision_tower", "merger", "bridge"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name


def test_the_bridge_reads_exactly_the_kept_tokens_as_at_inference(tmp_path: Path) -> None:
    """A student's bridged tokens equal ``model.apply_bridge`` on the same kept tokens and prompt (the budget
    pipeline's call), video by video, in eval mode."""
    recipe, parts = largest_view_parts(tmp_path, bridge=BRIDGE)
    model = parts.model.eval()
    batch = batch_of(parts)
    with torch.no_grad():
        videos = batch_videos(model, batch, CPU)
        student = selected_views(model, batch, [16, 4], TokenSelect("flux"), CPU)[1]
        for row, video in enumerate(videos):
            kept = TokenSelect("flux").keep(video.detached(), 4)
            ids = student["input_ids"][row][student["attention_mask"][row].bool()]
            hw = video.grid[0] * video.grid[1]
            want = model.apply_bridge(video.tokens[kept], kept // hw, places=kept % hw, input_ids=ids)
            slots = student["input_ids"][row] == model.config.video_token_id
            torch.testing.assert_close(student["inputs_embeds"][row][slots], want)


def test_recipe_and_runtime_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^cotrain.select: unknown selection 'fluxx'; choose one of resize, flux"):
        parse_recipe(tiny_recipe(tmp_path, cotrain={"budgets": [16, 4], "select": "fluxx"}))
    with pytest.raises(RecipeError, match=r"^cotrain.groups: "):
        parse_recipe(tiny_recipe(tmp_path, cotrain={"budgets": [16, 4], "select": "flux", "groups": 0}))
    recipe, parts = largest_view_parts(tmp_path, budgets=(16, 4))
    with pytest.raises(ValueError, match=r"^cotrain.budgets: a student budget of 16 tokens a frame is not below the 16"):
        selected_views(parts.model, batch_of(parts), [32, 16], TokenSelect("flux"), CPU)
    two_views = [batch_of(parts), batch_of(parts)]
    with pytest.raises(ValueError, match="takes the largest view alone, the dataset gave 2 views"):
        ct.cotrain_loss(parts.model, two_views, 1.0, CPU, weight=1.0, temperature=1.0, budgets=[16, 4],
                        select=TokenSelect("flux"))


@pytest.mark.parametrize("select", ["flux", "mask"])
def test_training_with_a_selection_logs_every_budget_and_resumes_exactly(tmp_path: Path, select: str) -> None:
    """Four steps with a checkpoint after each; a second run that lost its last two checkpoints (a run killed
    after step 2) resumes from checkpoint-2 and ends on the same weights (the mask's draws come from the RNG the
    checkpoint restores)."""
    sections = {"schedule": {"epochs": 2}, "checkpoint": {"every": 1, "keep": 4}}
    recipe, parts = largest_view_parts(tmp_path, select=select, budgets=(16, 4, 1))
    recipe = parse_recipe(tiny_recipe(tmp_path, cotrain={"budgets": [16, 4, 1], "select": select}, **sections))
    with one_thread():
        final = train(recipe, parts)
    run = final.parent
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert set(records[-1]["parts"]) == {"lm_16", "lm_4", "lm_1", "kl_4", "kl_1"}
    assert records[-1]["visual_tokens_per_sample"] == 32  # the largest view's: 2 frames of 16
    whole = load_file(final / "model.safetensors")
    shutil.rmtree(run / "checkpoint-3"), shutil.rmtree(run / "checkpoint-4"), shutil.rmtree(final)
    _, parts = largest_view_parts(tmp_path, select=select, budgets=(16, 4, 1))
    with one_thread():
        resumed = load_file(train(recipe, parts) / "model.safetensors")
    assert max(float((whole[k] - resumed[k]).abs().max()) for k in whole) == 0
