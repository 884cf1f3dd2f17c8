"""TempFlexForConditionalGeneration with tiny random Qwen3 and Gemma3: splice, loss, generate, save/load."""

import numpy as np
import pytest
import torch
from conftest import perturb_tff, random_image, tiny_model
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, AutoProcessor

from tempflex import PlaceholderMismatchError, TempFlexForConditionalGeneration, TempFlexProcessor
from tempflex.media import VideoClip
from tempflex.modeling import IGNORE_INDEX

TEXTS = ["qwen3", "gemma3"]


def _batch(proc, rng):
    images = [random_image(rng, 64, 96), random_image(rng, 120, 60)]  # two resolutions in one batch
    video = VideoClip.from_array(rng.integers(0, 256, (4, 48, 80, 3), dtype=np.uint8), fps=2.0)
    return proc(["Look at <image> then <video>, what moves?", "And <image>?"], images=images, videos=[video])


@pytest.mark.parametrize("text", TEXTS)
def test_forward_loss_and_visual_token_count(text):
    rng = np.random.default_rng(0)
    model, proc = tiny_model(text)
    batch = _batch(proc, rng)
    out = model(**batch, labels=batch["input_ids"].clone())
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    n_img = int(batch["image_grid_thw"].prod(-1).sum()) // 4
    n_vid = int(batch["video_grid_thw"].prod(-1).sum()) // 4
    assert out.image_embeds.shape == (n_img, 32) and out.video_embeds.shape == (n_vid, 32)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == n_img


def test_visual_tokens_reach_the_llm():
    """Changing the video's pixels changes the logits after its placeholders, not before."""
    rng = np.random.default_rng(1)
    model, proc = tiny_model("qwen3")
    perturb_tff(model)
    frames = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    a = proc(["Hi there <video> end"], videos=[VideoClip.from_array(frames)])
    b = proc(["Hi there <video> end"], videos=[VideoClip.from_array(255 - frames)])
    first = int((a["input_ids"][0] == model.config.video_token_id).nonzero()[0])
    with torch.no_grad():
        la, lb = model(**a).logits, model(**b).logits
    torch.testing.assert_close(la[:, :first], lb[:, :first])
    assert (la[:, -1] - lb[:, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("text", TEXTS)
def test_text_only_matches_the_bare_llm(text):
    """Gemma3 scales its embeddings inside its embedding module: our text path must equal the LLM's own."""
    model, proc = tiny_model(text)
    ids = proc(["a red ball moves to the left"])["input_ids"]
    with torch.no_grad():
        ours = model(input_ids=ids).logits
        bare = model.language_model(input_ids=ids).logits
    torch.testing.assert_close(ours, bare, rtol=0, atol=0)


def test_labels_ignore_visual_positions():
    rng = np.random.default_rng(2)
    model, proc = tiny_model("qwen3")
    batch = proc(["<image> a cat"], images=[random_image(rng, 64, 64)])
    ids = batch["input_ids"]
    labels = ids.clone()
    with torch.no_grad():
        ours = model(**batch, labels=labels).loss
        manual = labels.masked_fill(ids == model.config.image_token_id, -100)
        ref = model(**batch, labels=manual).loss
        logits = model(**batch).logits[0, :-1]
        target = manual[0, 1:]
        keep = target != -100
        by_hand = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours, by_hand, rtol=1e-5, atol=1e-5)


def test_placeholder_mismatch_is_a_clear_error():
    rng = np.random.default_rng(3)
    model, proc = tiny_model("qwen3")
    batch = proc(["<image> and <image>"], images=[random_image(rng, 64, 64), random_image(rng, 64, 96)])
    batch["input_ids"][0, 0] = proc.tokenizer.eos_token_id  # lose one placeholder token
    with pytest.raises(PlaceholderMismatchError, match="image placeholder tokens but the images give"):
        model(**batch)
    video = proc(["<video>"], videos=[VideoClip.from_array(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))])
    del video["input_ids"]
    with pytest.raises(ValueError, match="need input_ids"):
        model(inputs_embeds=torch.zeros(1, 3, 32), **video)


@pytest.mark.parametrize("text", TEXTS)
def test_generate_single_and_batched_agree(text):
    """Greedy generation of a prompt alone equals its row in a left-padded mixed-resolution batch."""
    rng = np.random.default_rng(4)
    model, proc = tiny_model(text)
    perturb_tff(model)
    images = [random_image(rng, 64, 128), random_image(rng, 96, 64)]
    prompts = ["Describe <image> now", "A much longer prompt with more words about <image> please"]
    batch = proc(prompts, images=images)
    out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 6)
    for i in range(2):
        single = proc([prompts[i]], images=[images[i]])
        one = model.generate(**single, max_new_tokens=6, do_sample=False)
        assert torch.equal(one[0, -6:], out[i, -6:])


def test_generate_video_with_timestamps():
    rng = np.random.default_rng(5)
    model, proc = tiny_model("gemma3", video_timestamps=True)
    clip = VideoClip(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8), timestamps=[0.0, 1.5, 3.0])
    batch = proc(["<video> what happens?"], videos=[clip])
    assert "<t=1.5s>" in proc.tokenizer.decode(batch["input_ids"][0])
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 4


@pytest.mark.parametrize("text", TEXTS)
def test_save_and_reload_bit_exact(tmp_path, text):
    rng = np.random.default_rng(6)
    model, proc = tiny_model(text)
    perturb_tff(model)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path).eval()
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    proc2 = TempFlexProcessor.from_pretrained(tmp_path)
    batch = _batch(proc2, rng)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_apply_bridge_reads_exactly_the_tokens_it_is_given():
    """apply_bridge over every token equals forward's bridging; over a subset it equals the bridge of a video made
    of those tokens only (dropped tokens leave no trace); a model without a bridge returns its input."""
    model, proc = tiny_model("gemma3", bridge={})
    model.eval()
    rng = np.random.default_rng(0)
    batch = proc(text=["<video>"], videos=[np.stack([random_image(rng, 64, 64) for _ in range(4)])])
    pixels, grid = batch["pixel_values_videos"], batch["video_grid_thw"]  # 4 frames of 2 x 2 merged tokens
    with torch.no_grad():
        raw = model.get_visual_features(pixels, grid, video=True)  # (16, E), the paper's tokens
        full = model(**batch).video_embeds  # (16, E), bridged
        frames = torch.arange(4).repeat_interleave(4)  # (16,)
        torch.testing.assert_close(model.apply_bridge(raw, frames), full)
        keep = torch.tensor([0, 3, 9, 10, 11])  # frames 0, 0, 2, 2, 2: frames 1 and 3 are dropped
        some = model.apply_bridge(raw[keep], frames[keep])
        padded = torch.stack([raw[[0, 3, 0]], raw[[9, 10, 11]]])  # (2, 3, E): frame 0 padded with a junk token
        mask = torch.tensor([[True, True, False], [True, True, True]])
        word = model.bridge.words([padded], model.get_input_embeddings(), [mask])[0][0]  # (E,)
        torch.testing.assert_close(some, raw[keep] + word)
        assert not torch.allclose(some, full[keep])  # the word of the whole video is another
    plain, _ = tiny_model("gemma3")
    tokens = torch.randn(5, plain.config.text_config.hidden_size)
    assert plain.bridge is None and torch.equal(plain.apply_bridge(tokens, torch.zeros(5, dtype=torch.long)), tokens)


def test_bridge_query_reads_the_prompt_outside_the_media():
    """bridge.query: at insertion the word is the question-blind one; once trained, another question gives another
    word through forward(); the query skips the video block (separators, tags), so it does not change with the
    number of frames."""
    model, proc = tiny_model("gemma3", bridge={"query": True}, video_timestamps=True)
    blind, _ = tiny_model("gemma3", bridge={})
    model.eval()
    rng = np.random.default_rng(0)
    video = np.stack([random_image(rng, 64, 64) for _ in range(4)])
    texts = [proc.apply_chat_template([{"role": "user", "content": f"<video>\nWhich colour appears {w}?"}])
             for w in ("first", "last")]
    batch = proc(text=texts, videos=[video, video])
    pixels, grid = batch["pixel_values_videos"], batch["video_grid_thw"]
    queries = model.bridge_queries(batch["input_ids"], batch["attention_mask"])  # (2, E)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        raw = model.get_visual_features(pixels, grid, video=True)  # (32, E)
        start = model.bridge.apply(raw, grid, embed, queries)[0].view(2, 16, -1)
        torch.testing.assert_close(start[0], start[1])  # FiLM is zero at insertion
        model.bridge.ask[1].weight.normal_()
        steered = model.bridge.apply(raw, grid, embed, queries)[0].view(2, 16, -1)
        assert not torch.allclose(steered[0], steered[1])
        # forward() gives each video its own row's query
        out = model(**batch, output_hidden_states=False)
        assert out.video_embeds is not None and torch.allclose(out.video_embeds.view(2, 16, -1), steered, atol=1e-5)
    # the query is the text around the video, not its inner separators and tags: two frames give the same query
    short = proc(text=texts[:1], videos=[video[:2]])
    torch.testing.assert_close(model.bridge_queries(short["input_ids"])[0], queries[0])
    # a checkpoint of a question-blind readout loads into a config that switches the query on
    from tempflex.hub.linked import switched_on

    assert switched_on("bridge.ask.1.weight", blind.state_dict())
    with pytest.raises(ValueError, match="unknown fields"):
        tiny_model("gemma3", bridge={"querry": True})


def test_in_training_the_bridge_query_reads_the_prompt_not_the_answer():
    """With labels (training) the supervised answer tokens are in the ids; the bridge's query leaves them out, so it
    reads what it will read at inference, whatever the answer says."""
    model, proc = tiny_model("gemma3", bridge={"query": True})
    model.eval()
    with torch.no_grad():
        model.bridge.ask[1].weight.normal_(generator=torch.Generator().manual_seed(0))  # the query steers the word
    rng = np.random.default_rng(0)
    video = np.stack([random_image(rng, 64, 64) for _ in range(2)])
    text = proc.apply_chat_template([{"role": "user", "content": "<video>\nWhich way does it move?"}])
    prompt = proc(text=[text], videos=[video])
    seen = []
    model.bridge.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["queries"]),
                                       with_kwargs=True)  # the queries it read
    with torch.no_grad():
        model(**prompt)  # inference: the prompt alone
        for answer in ("up", "down"):
            ids = proc.tokenizer(answer, add_special_tokens=False, return_tensors="pt").input_ids
            full = torch.cat([prompt["input_ids"], ids], dim=1)
            labels = torch.cat([torch.full_like(prompt["input_ids"], IGNORE_INDEX), ids], dim=1)
            model(input_ids=full, attention_mask=torch.ones_like(full), labels=labels,
                  pixel_values_videos=prompt["pixel_values_videos"], video_grid_thw=prompt["video_grid_thw"])
    inference, up, down = seen
    torch.testing.assert_close(up, inference, rtol=0, atol=0)
    torch.testing.assert_close(down, inference, rtol=0, atol=0)
    unmasked = model.bridge_queries(full)  # the same ids read whole: the answer would move the query
    assert not torch.allclose(unmasked, down[:1])


def test_batch_normalised_query_tells_questions_apart_by_what_differs():
    """bridge.query_norm: batch: "first" and "last" prompts share all their text but a word; normalised per
    prompt their queries are nearly the same, standardised over the batch they differ by ~1 in every feature the
    word moves. In eval mode the running statistics stand in, so a single question is read alone."""
    texts = [f"<video>\nWhich colour appears {w}?\nOptions: red, blue, green, cyan." for w in ("first", "last")]
    normalised = {}
    for norm in ("layer", "batch"):
        model, proc = tiny_model("gemma3", bridge={"query": True, "query_norm": norm})
        ids = proc.tokenizer([proc.apply_chat_template([{"role": "user", "content": t}]) for t in texts],
                             padding=True, return_tensors="pt")
        queries = model.bridge_queries(ids["input_ids"], ids["attention_mask"])  # (2, E)
        ask = model.bridge.ask[0].train()
        normalised[norm] = ask(queries).detach()
        assert isinstance(ask, torch.nn.BatchNorm1d if norm == "batch" else torch.nn.LayerNorm)
    gap = {k: (v[0] - v[1]).abs().mean().item() for k, v in normalised.items()}
    assert gap["batch"] > 3 * gap["layer"], gap  # 0.73 against 0.17 with the tiny tokenizer
    ask.eval()
    assert ask(queries[:1]).shape == (1, queries.shape[1])
    with pytest.raises(ValueError, match="bridge.query_norm must be layer or batch, got 'group'"):
        tiny_model("gemma3", bridge={"query": True, "query_norm": "group"})


def test_word_bridge_saves_reloads_and_switches_on_over_a_checkpoint_without_it(tmp_path):
    from tempflex.hub.linked import switched_on

    rng = np.random.default_rng(7)
    model, proc = tiny_model("gemma3", bridge={})
    with torch.no_grad():
        model.bridge.sharpness.fill_(23.0)  # not the value at insertion: must come back from the file
    model.eval().save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert float(again.bridge.sharpness.detach()) == 23.0
    batch = _batch(TempFlexProcessor.from_pretrained(tmp_path), rng)
    with torch.no_grad():  # equal weights (checked); the bridge's vocabulary matmuls differ by ~2e-7 across instances
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
        torch.testing.assert_close(model(**batch).logits, again(**batch).logits, rtol=0, atol=1e-6)
    # a linked checkpoint without the bridge may switch it on; one that has part of it may not lose the rest
    without = {k: v for k, v in model.state_dict().items() if not k.startswith("bridge.")}
    assert switched_on("bridge.query", without) and switched_on("temporal.layers.0.x", {})
    assert not switched_on("bridge.query", {"bridge.sharpness": 1})
    assert not switched_on("merger.mlp.0.weight", without)


def test_auto_classes(tmp_path):
    model, proc = tiny_model("qwen3")
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "tempflex"
    assert isinstance(AutoModel.from_pretrained(tmp_path), TempFlexForConditionalGeneration)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), TempFlexForConditionalGeneration)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), TempFlexProcessor)


def test_fresh_tff_leaves_features_unchanged_and_trains():
    rng = np.random.default_rng(7)
    with_tff, proc = tiny_model("qwen3", seed=3)
    without, _ = tiny_model("qwen3", seed=3, tff_enabled=False)
    without.load_state_dict({k: v for k, v in with_tff.state_dict().items() if not k.startswith("temporal.")})
    clip = VideoClip.from_array(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    batch = proc(["<video> ok"], videos=[clip])
    with torch.no_grad():
        assert torch.equal(with_tff(**batch).video_embeds, without(**batch).video_embeds)
    with_tff.train()
    loss = with_tff(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert with_tff.temporal.layers[-1].norm.weight.grad.abs().sum() > 0
    assert with_tff.merger.mlp[0].weight.grad.abs().sum() > 0
    assert with_tff.vision_tower.embeddings.patch_embedding.weight.grad.abs().sum() > 0


def test_images_skip_tff_unless_asked():
    rng = np.random.default_rng(8)
    image = random_image(rng, 64, 64)
    for on_images in (False, True):
        model, proc = tiny_model("qwen3", tff_on_images=on_images)
        perturb_tff(model)
        batch = proc(["<image>"], images=[image])
        feats = model.get_visual_features(batch["pixel_values"], batch["image_grid_thw"], video=False)
        model.temporal = None
        plain = model.get_visual_features(batch["pixel_values"], batch["image_grid_thw"], video=False)
        assert torch.equal(feats, plain) is (not on_images)


def test_gradient_checkpointing_gives_the_same_gradients():
    rng = np.random.default_rng(9)
    model, proc = tiny_model("qwen3")
    perturb_tff(model)
    batch = proc(["<video> go"], videos=[VideoClip.from_array(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))])
    model.train()

    def grads():
        model.zero_grad()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable()  # reaches TFF through its `gradient_checkpointing` flag
    assert model.temporal.gradient_checkpointing
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], ckpt[name], rtol=1e-4, atol=1e-6)


def test_videos_of_one_shape_share_a_tff_batch_with_the_same_result():
    rng = np.random.default_rng(10)
    model, proc = tiny_model("qwen3")
    perturb_tff(model)
    clips = [VideoClip.from_array(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)) for _ in range(3)]
    together = proc(["<video><video><video>"], videos=clips)
    with torch.no_grad():
        joint = model.get_video_features(together["pixel_values_videos"], together["video_grid_thw"])
        alone = [model.get_video_features(b["pixel_values_videos"], b["video_grid_thw"])
                 for b in (proc(["<video>"], videos=[c]) for c in clips)]
    torch.testing.assert_close(joint, torch.cat(alone), rtol=1e-5, atol=1e-5)


def test_pixels_without_grids_are_a_clear_error():
    rng = np.random.default_rng(11)
    model, proc = tiny_model("qwen3")
    batch = proc(["<image>"], images=[random_image(rng, 64, 64)])
    del batch["image_grid_thw"]
    with pytest.raises(ValueError, match="pass image_grid_thw"):
        model(**batch)


def test_a_checkpoint_of_the_older_layout_loads_its_bridge_unchanged(tmp_path):
    """Checkpoints saved when the word bridge lived inside the merger (``merger.readout.*`` weights, flat
    ``merger_word_readout`` / ``merger_readout_*`` config fields) load into today's layout with the same outputs."""
    import json

    from safetensors.torch import load_file, save_file

    from tempflex.hub.linked import rename_legacy

    model, proc = tiny_model("gemma3", bridge={"query": True, "slots": 2})
    with torch.no_grad():
        model.bridge.ask[1].weight.normal_()
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    old = {("merger.readout." + k[len("bridge."):] if k.startswith("bridge.") else k): v for k, v in state.items()}
    assert rename_legacy(old) == state
    config = json.loads((tmp_path / "config.json").read_text())
    bridge = config.pop("bridge")
    config.update(merger_word_readout=True, merger_readout_query=bridge["query"], merger_readout_slots=bridge["slots"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path).eval()  # (a wheel-linked model: load_linked)
    assert again.config.bridge_config == model.config.bridge_config
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
