"""The word bridge (tempflex.bridge, not in the paper): the soft word it writes into every token, its pooling,
slots and span, its config section and the older flat config fields it replaces."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from tempflex.bridge import WordBridge, WordBridgeConfig
from tempflex.configuration import TempFlexConfig
from tempflex.merger import PatchMerger


def bridge_module(**fields) -> WordBridge:
    return WordBridge(16, WordBridgeConfig(**fields))


def test_word_bridge_writes_the_word_it_is_sure_of_into_every_token():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 16)
    embed.embed_scale = torch.tensor(4.0)  # Gemma3 scales its input embeddings in forward
    readout = bridge_module().eval()  # BatchNorm with its running statistics, as at inference
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
    readout = bridge_module()
    (out,), (logits,) = readout([tokens], embed)
    torch.nn.functional.cross_entropy(logits[None], torch.tensor([3])).backward()
    assert readout.query.grad is not None and tokens.grad.abs().sum() > 0


def test_word_bridge_pools_only_the_unmasked_tokens():
    """Frames padded with other tokens under a mask say the same word as the frames alone; a frame's masked
    tokens get no weight, whatever they hold."""
    torch.manual_seed(1)
    embed = torch.nn.Embedding(50, 16)
    readout = bridge_module().eval()
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


def test_the_bridge_is_a_module_of_the_model_only_when_configured():
    """The merger is the paper's unshuffle + MLP alone; the model owns a bridge only with ``config.bridge``."""
    assert not any("bridge" in name or "readout" in name for name, _ in PatchMerger(8, 16).named_parameters())
    plain, _ = tiny_model("qwen3")
    bridged, _ = tiny_model("qwen3", bridge={"slots": 2})
    assert plain.bridge is None and plain.config.bridge_config is None
    assert isinstance(bridged.bridge, WordBridge) and bridged.config.bridge_config == WordBridgeConfig(slots=2)
    assert sum(p.numel() for p in bridged.bridge.parameters()) > 0


def test_slot_bridge_keeps_where_each_token_is():
    """slots: swapping two tokens of every frame changes the word (a thing on the left is not on the right),
    while the pooling readout at insertion (mean pooling) cannot tell; masked places count as empty whatever they
    hold; a frame of more tokens than slots is averaged down in order, one of fewer is padded."""
    torch.manual_seed(2)
    embed = torch.nn.Embedding(50, 16)
    tokens = torch.randn(4, 4, 16)  # (F, T, E)
    swapped = tokens[:, [1, 0, 2, 3]]
    pooled, slotted = bridge_module().eval(), bridge_module(slots=4, slot_width=8).eval()
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


def test_bridge_config_is_checked_and_older_flat_fields_still_load():
    with pytest.raises(ValueError, match="bridge.slots must be a whole number >= 0, got -1"):
        TempFlexConfig(bridge={"slots": -1})
    with pytest.raises(ValueError, match="bridge.span must be a whole number >= 0, got True"):
        TempFlexConfig(bridge={"span": True})
    with pytest.raises(ValueError, match=r"bridge: unknown fields \['spam'\]"):
        TempFlexConfig(bridge={"spam": 1})
    with pytest.raises(TypeError, match="bridge must be a mapping"):
        TempFlexConfig(bridge=3)
    # the flat fields of older configs map onto the bridge section
    old = TempFlexConfig(merger_word_readout=True, merger_readout_slots=4, merger_readout_query=True)
    assert old.bridge_config == WordBridgeConfig(slots=4, query=True)
    assert not hasattr(old, "merger_word_readout") and not hasattr(old, "merger_readout_slots")
    assert TempFlexConfig(merger_word_readout=False).bridge is None
    with pytest.raises(ValueError, match="need merger_word_readout: true"):
        TempFlexConfig(merger_readout_span=16)
    again = TempFlexConfig.from_dict(old.to_dict())
    assert again.bridge_config == old.bridge_config


def test_span_bridge_reads_the_video_at_a_fixed_number_of_steps():
    """span: a video of 8 frames and the same video with every frame twice (16 frames) say the same word (both
    resampled to 8 steps); reversing the frames changes it (order is kept); no GRU is built."""
    torch.manual_seed(3)
    embed = torch.nn.Embedding(50, 16)
    readout = bridge_module(span=8, slots=2, slot_width=4).eval()
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


def test_table_row_norms_are_kept_until_the_table_changes():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 16)
    readout = bridge_module().eval()
    with torch.inference_mode():
        first = readout.row_norms(embed.weight)
        assert readout.row_norms(embed.weight) is first  # the same table: one pass over it
        torch.testing.assert_close(first, embed.weight.norm(dim=-1), rtol=0, atol=0)
    with torch.no_grad():
        embed.weight.mul_(2.0)  # an in-place update (an optimizer step) bumps the version: read again
    again = readout.row_norms(embed.weight)
    torch.testing.assert_close(again, 2 * first)
    assert not again.is_inference()  # kept outside inference mode: a training pass may save it for backward
    # a table that learns gets its norms with their gradient, never from the cache
    assert readout.row_norms(embed.weight).requires_grad
    tokens = torch.randn(3, 2, 16)
    (_,), (logits,) = readout([tokens], embed)
    logits[7].backward()
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0
