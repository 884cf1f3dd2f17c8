"""Pixels -> patches -> SigLIP2: parity with transformers' own processor layout and Siglip2VisionModel."""

import numpy as np
import pytest
import torch
from transformers import Siglip2VisionConfig, Siglip2VisionModel
from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

from tempflex.vision.encoder import encode_grids, extend_position_table
from tempflex.vision.patches import patchify, resize_frames, to_frames
from tempflex.vision.resize import native_grid

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_patches=16,
              vision_use_head=False)


@pytest.fixture(scope="module")
def tower():
    torch.manual_seed(0)
    return Siglip2VisionModel(Siglip2VisionConfig(**VISION)).eval()


def test_patch_layout_matches_transformers():
    pixels = torch.randn(2, 3, 32, 48)
    ours = patchify(pixels, 16)  # (T, h*w, K)
    for t in range(2):
        ref = convert_image_to_patches(pixels[t].numpy(), 16)  # the numpy twin, no torchvision needed
        assert torch.equal(ours[t], torch.from_numpy(ref))


def test_resize_normalises_to_siglip_range():
    frames = to_frames(np.full((50, 70, 3), 255, dtype=np.uint8))
    grid = native_grid(50, 70)
    x = resize_frames(frames, grid)
    assert x.shape == (1, 3, grid.height, grid.width)
    assert torch.allclose(x, torch.ones_like(x))


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_bad_pixels_are_clear_errors(bad):
    with pytest.raises(ValueError):
        to_frames(bad)


def _reference(tower, patches, h, w):
    """transformers' own padded-batch path for one image."""
    with torch.no_grad():
        return tower(
            pixel_values=patches[None], pixel_attention_mask=torch.ones(1, h * w, dtype=torch.long),
            spatial_shapes=torch.tensor([[h, w]]),
        ).last_hidden_state[0]


def test_mixed_resolution_batch_equals_one_by_one(tower):
    grids = torch.tensor([[1, 4, 6], [3, 2, 2], [1, 6, 4], [1, 4, 6]])  # images, a 3-frame video, a repeat size
    sizes = [int(t * h * w) for t, h, w in grids.tolist()]
    pixel_values = torch.randn(sum(sizes), 3 * 16 * 16)
    with torch.no_grad():
        out = encode_grids(tower, pixel_values, grids, max_frames_per_pass=2)
    chunks = torch.split(pixel_values, sizes)
    for item, chunk, (t, h, w) in zip(out, chunks, grids.tolist()):
        assert item.shape == (t, h * w, 32)
        for f in range(t):
            ref = _reference(tower, chunk.reshape(t, h * w, -1)[f], h, w)
            torch.testing.assert_close(item[f], ref, rtol=1e-5, atol=1e-5)


def test_padded_hf_batch_agrees_with_grouping(tower):
    """A padded, masked transformers batch of two sizes gives the same valid features as our grouping."""
    a, b = torch.randn(24, 768), torch.randn(8, 768)
    padded = torch.zeros(2, 24, 768)
    padded[0], padded[1, :8] = a, b
    mask = torch.zeros(2, 24, dtype=torch.long)
    mask[0], mask[1, :8] = 1, 1
    with torch.no_grad():
        hf = tower(pixel_values=padded, pixel_attention_mask=mask, spatial_shapes=torch.tensor([[4, 6], [2, 4]]))
        ours = encode_grids(tower, torch.cat([a, b]), torch.tensor([[1, 4, 6], [1, 2, 4]]))
    torch.testing.assert_close(ours[0][0], hf.last_hidden_state[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1][0], hf.last_hidden_state[1, :8], rtol=1e-5, atol=1e-5)


def test_patch_count_mismatch_is_an_error(tower):
    with pytest.raises(ValueError, match="patches but the grids need"):
        encode_grids(tower, torch.randn(10, 768), torch.tensor([[1, 2, 4]]))


def test_extend_position_table_keeps_the_interpolated_field():
    """On a smooth learned field, per-image positions from the 45x45 table match those from the 4x4 original."""
    torch.manual_seed(0)
    model = Siglip2VisionModel(Siglip2VisionConfig(**VISION)).eval()
    r, c = torch.meshgrid(torch.linspace(-1, 1, 4), torch.linspace(-1, 1, 4), indexing="ij")
    field = torch.stack([torch.sin(r + k / 32 * c) for k in range(32)], dim=-1)  # (4, 4, D) smooth
    with torch.no_grad():
        model.embeddings.position_embedding.weight.copy_(field.reshape(16, 32))
    shapes = torch.tensor([[8, 12], [4, 4], [16, 6]])
    emb = model.embeddings
    with torch.no_grad():
        before = emb.resize_positional_embeddings(field, shapes, max_length=192)
        assert extend_position_table(model, 2048) == 45 * 45
        table = emb.position_embedding.weight.reshape(45, 45, -1)
        after = emb.resize_positional_embeddings(table, shapes, max_length=192)
    assert model.config.num_patches == 2025 and emb.position_embedding.weight.shape == (2025, 32)
    err = (after - before).abs()  # interpolating twice differs most at the borders, where bilinear clamps
    assert err.max() < 0.25 and err.mean() < 0.05, (err.max(), err.mean())
    x = torch.randn(1, 96, 768)
    with torch.no_grad():
        out = model(pixel_values=x, pixel_attention_mask=torch.ones(1, 96, dtype=torch.long),
                    spatial_shapes=torch.tensor([[8, 12]]))
    assert torch.isfinite(out.last_hidden_state).all()


def test_extend_position_table_never_shrinks():
    model = Siglip2VisionModel(Siglip2VisionConfig(**VISION))
    assert extend_position_table(model, 10) == 16 and model.config.num_patches == 16
