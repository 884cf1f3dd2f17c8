"""PatchMerger: the 2x2 window contract of DESIGN.md and the MLP's shapes."""

import pytest
import torch

from tempflex.merger import PatchMerger


def test_unshuffle_takes_true_2x2_windows():
    h, w, d = 4, 6, 3
    # patch (r, c) of frame n carries the value 1000 n + 10 r + c in every channel
    r, c = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = (10 * r + c).reshape(h * w, 1).float().expand(h * w, d)  # (h*w, D) row-major
    x = torch.stack([frame, frame + 1000])  # (N=2, h*w, D)
    out = PatchMerger(d, 8).unshuffle(x, (h, w))  # (2, h/2*w/2, 4D)
    assert out.shape == (2, (h // 2) * (w // 2), 4 * d)
    for n in range(2):
        for i in range(h // 2):
            for j in range(w // 2):
                token = out[n, i * (w // 2) + j].reshape(4, d)[:, 0]
                want = [10 * (2 * i) + 2 * j, 10 * (2 * i) + 2 * j + 1, 10 * (2 * i + 1) + 2 * j,
                        10 * (2 * i + 1) + 2 * j + 1]
                assert token.tolist() == [v + 1000 * n for v in want]


def test_unshuffle_is_not_the_authors_1x4_window():
    x = torch.arange(16.0).reshape(1, 16, 1)  # a 4x4 grid, one channel
    out = PatchMerger(1, 2).unshuffle(x, (4, 4))
    assert out[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # not [0, 1, 2, 3]


def test_forward_shape_and_grad():
    m = PatchMerger(16, 24, hidden_dim=40)
    x = torch.randn(3, 8 * 4, 16, requires_grad=True)
    y = m(x, (8, 4))
    assert y.shape == (3, 8, 24)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("grid", [(3, 4), (4, 5)])
def test_odd_grid_is_a_clear_error(grid):
    h, w = grid
    with pytest.raises(ValueError, match="not divisible"):
        PatchMerger(8, 8).unshuffle(torch.randn(1, h * w, 8), grid)


def test_patch_count_must_match_grid():
    with pytest.raises(ValueError, match="grid is 4x4"):
        PatchMerger(8, 8).unshuffle(torch.randn(1, 15, 8), (4, 4))


def test_word_readout_writes_the_word_it_is_sure_of_into_every_token():
    from tempflex.readout import WordReadout

    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 16)
    embed.embed_scale = torch.tensor(4.0)  # Gemma3 scales its input embeddings in forward
    readout = WordReadout(16).eval()  # BatchNorm with its running statistics, as at inference
    tokens = torch.randn(3, 2, 16)  # (F, T, E)
    (out,), (logits,) = readout([tokens], embed)
    assert out.shape == (3, 2, 16) and logits.shape == (50,)
    # the word is the softmax mix of the scaled table over the 50 words (top=64 covers them all)
    word = torch.softmax(logits, -1) @ embed.weight * 4.0
    torch.testing.assert_close(out - tokens, word.expand(3, 2, 16))
    # made sure of word 7 (its logit far above the rest), every token gains exactly word 7's scaled embedding
    with torch.no_grad():
        readout.say[2].weight.zero_()
        readout.say[2].bias.copy_(embed.weight[7])
        readout.sharpness.fill_(100.0)
    (out,), (logits,) = readout([tokens], embed)
    assert int(logits.argmax()) == 7
    torch.testing.assert_close(out - tokens, (embed.weight[7] * 4.0).expand(3, 2, 16))
    # a gradient reaches the pooling and the tokens, not the (frozen) table
    embed.weight.requires_grad_(False)
    tokens.requires_grad_(True)
    readout = WordReadout(16)
    (out,), (logits,) = readout([tokens], embed)
    torch.nn.functional.cross_entropy(logits[None], torch.tensor([3])).backward()
    assert readout.query.grad is not None and tokens.grad.abs().sum() > 0


def test_word_readout_pools_only_the_unmasked_tokens():
    """Frames padded with other tokens under a mask say the same word as the frames alone; a frame's masked
    tokens get no weight, whatever they hold."""
    from tempflex.readout import WordReadout

    torch.manual_seed(1)
    embed = torch.nn.Embedding(50, 16)
    readout = WordReadout(16).eval()
    with torch.no_grad():
        readout.query.normal_()  # attention pooling, not the mean of the start
    one = torch.randn(4, 1, 16)  # (F, 1, E): one token a frame
    padded = torch.cat([one, 100 * torch.randn(4, 2, 16)], dim=1)  # (F, 3, E), two junk tokens a frame
    mask = torch.tensor([[True, False, False]]).expand(4, 3)
    alone, logits_alone = readout.words([one], embed)
    masked, logits_masked = readout.words([padded], embed, [mask])
    torch.testing.assert_close(masked, alone)
    torch.testing.assert_close(logits_masked, logits_alone)
    unmasked, _ = readout.words([padded], embed)
    assert not torch.allclose(unmasked, alone)  # the junk would count without the mask


def test_merger_owns_the_readout_only_when_asked():
    assert PatchMerger(8, 16).readout is None
    assert sum(p.numel() for p in PatchMerger(8, 16, word_readout=True).readout.parameters()) > 0


def test_slot_readout_keeps_where_each_token_is():
    """slots: swapping two tokens of every frame changes the word (a thing on the left is not on the right),
    while the pooling readout at insertion (mean pooling) cannot tell; masked places count as empty whatever they
    hold; a frame of more tokens than slots is averaged down in order, one of fewer is padded."""
    from tempflex.readout import WordReadout

    torch.manual_seed(2)
    embed = torch.nn.Embedding(50, 16)
    tokens = torch.randn(4, 4, 16)  # (F, T, E)
    swapped = tokens[:, [1, 0, 2, 3]]
    pooled, slotted = WordReadout(16).eval(), WordReadout(16, slots=4, slot_width=8).eval()
    with torch.no_grad():
        slotted.standardise.running_var.fill_(0.01)  # the features' scale after training, not 1 (a fresh norm)
    torch.testing.assert_close(pooled.words([tokens], embed)[1], pooled.words([swapped], embed)[1])
    assert not torch.allclose(slotted.words([tokens], embed)[1], slotted.words([swapped], embed)[1])
    assert slotted.key is None and slotted.query is None  # no dead pooling weights
    # two real tokens a frame, in places 0 and 2; the others hold junk under the mask, or are zeros
    mask = torch.tensor([True, False, True, False]).expand(4, 4)
    junk = torch.where(mask[..., None], tokens, 100 * torch.randn(4, 4, 16))
    empty = torch.where(mask[..., None], tokens, torch.zeros(4, 4, 16))
    masked, _ = slotted.words([junk], embed, [mask])
    torch.testing.assert_close(masked, slotted.words([empty], embed, [mask])[0])
    # eight tokens a frame into four slots: neighbours averaged; two tokens: padded with empty slots
    eight = torch.randn(4, 8, 16)
    frames = slotted._frames(eight, None)  # (F, S * p)
    direct = slotted.place(slotted.norm(eight)).unflatten(1, (4, 2)).mean(2).flatten(1)
    torch.testing.assert_close(frames, direct)
    assert slotted._frames(tokens[:, :2], None)[:, 16:].abs().sum() == 0


def test_slot_readout_config_is_checked():
    from tempflex.configuration import TempFlexConfig

    with pytest.raises(ValueError, match="merger_readout_slots needs merger_word_readout"):
        TempFlexConfig(merger_readout_slots=4)
    with pytest.raises(ValueError, match="merger_readout_slots must be a whole number"):
        TempFlexConfig(merger_word_readout=True, merger_readout_slots=-1)
    with pytest.raises(ValueError, match="merger_readout_span must be a whole number"):
        TempFlexConfig(merger_word_readout=True, merger_readout_span=True)
    with pytest.raises(ValueError, match="merger_readout_span needs merger_word_readout"):
        TempFlexConfig(merger_readout_span=16)
    assert TempFlexConfig(merger_word_readout=True, merger_readout_slots=4).merger_readout_slots == 4


def test_span_readout_reads_the_video_at_a_fixed_number_of_steps():
    """span: a video of 8 frames and the same video with every frame twice (16 frames) say the same word (both
    resampled to 8 steps); reversing the frames changes it (order is kept); no GRU is built."""
    from tempflex.readout import WordReadout

    torch.manual_seed(3)
    embed = torch.nn.Embedding(50, 16)
    readout = WordReadout(16, span=8, slots=2, slot_width=4).eval()
    with torch.no_grad():
        readout.standardise.running_var.fill_(0.01)
    assert readout.time is None
    video = torch.randn(8, 2, 16)  # (F, T, E)
    word, logits = readout.words([video], embed)
    _, logits_twice = readout.words([video.repeat_interleave(2, dim=0)], embed)
    torch.testing.assert_close(logits_twice, logits)
    assert not torch.allclose(readout.words([video.flip(0)], embed)[1], logits)
    # fewer frames than steps: each repeated; two videos of different lengths share one batch
    short, _ = readout.words([video[::2]], embed)
    both, _ = readout.words([video, video[::2]], embed)
    torch.testing.assert_close(both, torch.cat([word, short]))
