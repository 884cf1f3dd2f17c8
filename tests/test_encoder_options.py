"""FluxViT's encoder plug-ins on SigLIP2 (tempflex.vision.flux_modules): dual patch norm and GLPE."""

import copy
import json

import pytest
import torch
from conftest import TEXT_CONFIGS, VISION_CONFIG
from transformers import Siglip2VisionConfig, Siglip2VisionModel

from tempflex.configuration import TempFlexConfig
from tempflex.modeling import TempFlexForConditionalGeneration
from tempflex.vision.encoder import extend_position_table
from tempflex.vision.flux_modules import (
    DualPatchNorm,
    GlobalPositionEmbeddings,
    GridDepthwiseConv,
    LocalPositionAttention,
    install_encoder_options,
)

K = 3 * 16 * 16  # values of a 16x16 RGB patch
OPTIONS = {"dpn": {"dual_patch_norm": True, "glpe": False}, "glpe": {"dual_patch_norm": False, "glpe": True}}


def _tower(attn: str = "sdpa", seed: int = 0) -> Siglip2VisionModel:
    torch.manual_seed(seed)
    config = Siglip2VisionConfig(**VISION_CONFIG, vision_use_head=False, attn_implementation=attn)
    return Siglip2VisionModel(config).eval()


def _with(tower: Siglip2VisionModel, **options) -> Siglip2VisionModel:
    return install_encoder_options(copy.deepcopy(tower), **{**OPTIONS["glpe"], **options})


def _perturb(module: torch.nn.Module, seed: int = 1) -> None:
    """Random values for every GLPE conv, so that GLPE is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, GridDepthwiseConv):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)


def _padded(grids: list[tuple[int, int]], seed: int = 2) -> tuple[dict, list[torch.Tensor]]:
    """A transformers-style padded batch of random patches on the given grids, and each image's patches."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.randn(h * w, K, generator=g) for h, w in grids]
    n = max(x.shape[0] for x in images)
    pixels, mask = torch.zeros(len(images), n, K), torch.zeros(len(images), n, dtype=torch.long)
    for i, x in enumerate(images):
        pixels[i, : len(x)], mask[i, : len(x)] = x, 1
    return {"pixel_values": pixels, "pixel_attention_mask": mask, "spatial_shapes": torch.tensor(grids)}, images


def _run(tower: Siglip2VisionModel, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return tower(**batch).last_hidden_state  # (B, N, D)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_zero_init_glpe_equals_the_plain_encoder_exactly(attn):
    plain = _tower(attn)
    glpe = _with(plain)
    assert isinstance(glpe.embeddings, GlobalPositionEmbeddings)
    assert all(isinstance(layer.self_attn, LocalPositionAttention) for layer in glpe.encoder.layers)
    batch, _ = _padded([(4, 6), (2, 3)])
    assert torch.equal(_run(glpe, batch), _run(plain, batch))


def test_grid_conv_matches_a_plain_loop_and_ignores_padding():
    """Row-major (h, w) layout, zero padding at the borders, one kernel per channel, nothing read past h*w."""
    conv = GridDepthwiseConv(4)
    _perturb(conv)
    x = torch.randn(2, 12, 4)  # image 0: a 2x5 grid + 2 padding rows, image 1: a 3x4 grid
    out = conv(x, torch.tensor([[2, 5], [3, 4]]))
    for b, (h, w) in enumerate([(2, 5), (3, 4)]):
        for r in range(h):
            for c in range(w):
                ref = torch.zeros(4)
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        if 0 <= r + dr < h and 0 <= c + dc < w:
                            ref += conv.weight[:, 0, dr + 1, dc + 1] * x[b, (r + dr) * w + c + dc]
                torch.testing.assert_close(out[b, r * w + c], ref)
    assert torch.equal(out[0, 10:], torch.zeros(2, 4))
    x2 = x.clone()
    x2[0, 10:] = 1e3  # changing the padding changes nothing
    assert torch.equal(conv(x2, torch.tensor([[2, 5], [3, 4]])), out)


def test_glpe_changes_the_output_and_is_invariant_to_batch_padding():
    glpe = _with(_tower())
    _perturb(glpe)
    batch, (_, small) = _padded([(4, 6), (2, 3)])  # the small image is padded from 6 to 24 patches
    together = _run(glpe, batch)
    alone = _run(glpe, {"pixel_values": small[None], "pixel_attention_mask": torch.ones(1, 6, dtype=torch.long),
                        "spatial_shapes": torch.tensor([[2, 3]])})
    torch.testing.assert_close(together[1, :6], alone[0], rtol=1e-5, atol=1e-5)
    assert (together - _run(_tower(), batch)).abs().max() > 1e-2  # the convs act


def test_dual_patch_norm_normalises_each_patch():
    plain = _tower()
    dpn = _with(plain, dual_patch_norm=True, glpe=False)
    emb = dpn.embeddings.patch_embedding
    assert isinstance(emb, DualPatchNorm) and emb.weight is not None
    seen = {}
    emb.pre_norm.register_forward_hook(lambda m, i, o: seen.update(linear_input=o))
    g = torch.Generator().manual_seed(3)
    patches = torch.rand(1, 24, K, generator=g) * 5 + 2  # far from zero mean / unit variance
    batch = {"pixel_values": patches, "pixel_attention_mask": torch.ones(1, 24, dtype=torch.long),
             "spatial_shapes": torch.tensor([[4, 6]])}
    out = _run(dpn, batch)
    x = seen["linear_input"]  # (1, 24, K): what the patch-embedding Linear sees
    torch.testing.assert_close(x.mean(-1), torch.zeros(1, 24), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.var(-1, unbiased=False), torch.ones(1, 24), atol=1e-3, rtol=0)
    embedded = emb(patches)  # (1, 24, D), the post-norm's output
    torch.testing.assert_close(embedded.mean(-1), torch.zeros(1, 24), atol=1e-5, rtol=0)
    # A per-patch change of brightness and contrast is invisible to the encoder; without DPN it is not.
    brighter = {**batch, "pixel_values": patches * 3 + 0.5}
    torch.testing.assert_close(_run(dpn, brighter), out, rtol=1e-4, atol=1e-4)
    assert (_run(plain, brighter) - _run(plain, batch)).abs().max() > 1e-2
    assert (out - _run(plain, batch)).abs().max() > 1e-2  # DPN cannot be inserted as the identity


@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradient_reaches_the_new_parameters(option):
    tower = install_encoder_options(_tower(), **OPTIONS[option]).train()
    batch, _ = _padded([(4, 6), (2, 3)])
    tower(**batch).last_hidden_state.pow(2).mean().backward()
    new = {n: p for n, p in tower.named_parameters() if any(k in n for k in ("pre_norm", "post_norm", "conv", "lpe"))}
    assert len(new) == {"dpn": 4, "glpe": 1 + 2}[option]  # 2 LayerNorms x (w, b); table conv + one LPE per layer
    for name, p in new.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("option", list(OPTIONS))
def test_gradient_checkpointing_gives_the_same_result(option):
    """The layers get their grids as a keyword, which must survive the checkpointed recompute."""
    towers = [install_encoder_options(_tower(), **OPTIONS[option]).train() for _ in range(2)]
    towers[1].gradient_checkpointing_enable()
    batch, _ = _padded([(4, 6), (2, 3)])
    grads = []
    for tower in towers:
        _perturb(tower)
        out = tower(**batch).last_hidden_state
        out.pow(2).mean().backward()
        grads.append({n: p.grad for n, p in tower.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_position_table_extension_works_under_glpe():
    glpe = _with(_tower())
    _perturb(glpe)
    assert extend_position_table(glpe, 64) == 64 and glpe.embeddings.position_embedding_size == 8
    batch, _ = _padded([(4, 6), (2, 3)])
    assert torch.isfinite(_run(glpe, batch)).all()


def _tiny_config(**options) -> TempFlexConfig:
    text = dict(TEXT_CONFIGS["qwen3"], num_hidden_layers=1, vocab_size=64)
    return TempFlexConfig(vision_config=dict(VISION_CONFIG), text_config=text, tff_num_layers=1, **options)


def _features(model: TempFlexForConditionalGeneration) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    grids = torch.tensor([[1, 4, 6], [2, 2, 4]])  # an image and a 2-frame video
    pixels = torch.randn(int(grids.prod(-1).sum()), K, generator=g)
    with torch.no_grad():
        return model.get_visual_features(pixels, grids, video=True)  # (V, E)


def test_options_on_round_trip_bit_exactly(tmp_path):
    torch.manual_seed(0)
    model = TempFlexForConditionalGeneration(_tiny_config(vision_dual_patch_norm=True, vision_glpe=True)).eval()
    _perturb(model)
    with torch.no_grad():
        model.vision_tower.embeddings.patch_embedding.pre_norm.weight.mul_(1.5)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["vision_dual_patch_norm"] is True and saved["vision_glpe"] is True
    loaded = TempFlexForConditionalGeneration.from_pretrained(tmp_path).eval()
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(_features(loaded), _features(model))


def test_options_off_models_are_unchanged_and_can_switch_glpe_on(tmp_path):
    torch.manual_seed(0)
    model = TempFlexForConditionalGeneration(_tiny_config()).eval()
    assert type(model.vision_tower.embeddings).__name__ == "Siglip2VisionEmbeddings"
    model.save_pretrained(tmp_path)
    plain = TempFlexForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert plain.state_dict().keys() == model.state_dict().keys()
    assert torch.equal(_features(plain), _features(model))
    # Every existing name is kept, so GLPE can start from an options-off checkpoint: its convs load as zeros.
    glpe, info = TempFlexForConditionalGeneration.from_pretrained(tmp_path, vision_glpe=True,
                                                                  output_loading_info=True)
    assert glpe.config.vision_glpe and set(info["missing_keys"]) == {
        "vision_tower.embeddings.position_conv.weight",
        *(f"vision_tower.encoder.layers.{i}.self_attn.lpe.weight" for i in range(2)),
    }
    assert torch.equal(_features(glpe.eval()), _features(model))
    # DPN changes the encoder, but its new LayerNorms also start from a clean init (ones and zeros).
    dpn = TempFlexForConditionalGeneration.from_pretrained(tmp_path, vision_dual_patch_norm=True).eval()
    norm = dpn.vision_tower.embeddings.patch_embedding.pre_norm
    assert torch.equal(norm.weight, torch.ones(K)) and torch.equal(norm.bias, torch.zeros(K))
    assert torch.equal(dpn.vision_tower.embeddings.patch_embedding.weight,
                       model.vision_tower.embeddings.patch_embedding.weight)
    assert torch.isfinite(_features(dpn)).all()


@pytest.mark.parametrize("field", ["vision_dual_patch_norm", "vision_glpe"])
def test_bad_option_values_are_clear_errors(field):
    with pytest.raises(TypeError, match=f"{field} must be true or false, got 'yes'"):
        _tiny_config(**{field: "yes"})
    with pytest.raises(TypeError, match=f"{field} must be true or false, got 1"):
        _tiny_config(**{field: 1})


def test_a_tower_with_options_the_config_turns_off_is_an_error():
    tower = install_encoder_options(_tower(), dual_patch_norm=True, glpe=True)
    with pytest.raises(ValueError, match="already has vision_glpe installed but the config has vision_glpe=False"):
        TempFlexForConditionalGeneration(_tiny_config(vision_dual_patch_norm=True), vision_tower=tower)
    again = install_encoder_options(tower, dual_patch_norm=True, glpe=True)  # idempotent: nothing wrapped twice
    assert isinstance(again.embeddings.patch_embedding.pre_norm, torch.nn.LayerNorm)
    assert isinstance(again.encoder.layers[0].self_attn.q_proj, torch.nn.Linear)


def test_glpe_attention_without_grids_is_a_clear_error():
    attn = _with(_tower()).encoder.layers[0].self_attn
    with pytest.raises(ValueError, match="needs each image's patch grid"):
        attn(torch.randn(1, 6, 32))
