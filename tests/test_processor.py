"""TempFlexProcessor: exact placeholder expansion, chat templates, persistence and bad input."""

import numpy as np
import pytest
import torch
from conftest import random_image, skimage_photo, tiny_config
from PIL import Image

from tempflex.media import VideoClip
from tempflex.processing import ProcessorSettings, TempFlexProcessor, plain_chat


@pytest.fixture
def proc():
    config, tokenizer = tiny_config("qwen3")
    return TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))


def test_image_expands_to_its_native_token_count(proc):
    photo = Image.open(skimage_photo("chelsea.png"))  # 451x300 real photo
    batch = proc(["<image> cat?"], images=[photo])
    t, h, w = batch["image_grid_thw"][0].tolist()
    assert (t, h * 16, w * 16) == (1, 288, 448)  # 300 -> 288, 451 -> 448: nearest 32-px multiples
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == h * w // 4 == 126
    assert batch["pixel_values"].shape == (h * w, 768)


def test_large_image_is_capped_at_2048_tokens(proc, rng):
    batch = proc(["<image>"], images=[random_image(rng, 1600, 1600)])
    _, h, w = batch["image_grid_thw"][0].tolist()
    assert h * w // 4 == 2025 and h % 2 == 0 and w % 2 == 0


def test_tiny_image_gets_the_minimum_4_tokens(proc, rng):
    batch = proc(["<image>"], images=[random_image(rng, 32, 32)])
    assert batch["image_grid_thw"][0].tolist() == [1, 4, 4]


def test_video_frames_share_one_grid_with_separators_and_timestamps(rng):
    config, tokenizer = tiny_config("qwen3", video_timestamps=True)
    proc = TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))
    clip = VideoClip(rng.integers(0, 256, (5, 720, 1280, 3), dtype=np.uint8), timestamps=[0, 0.5, 1.0, 1.5, 2.0])
    batch = proc(["<video> what?"], videos=[clip])
    assert batch["video_grid_thw"][0].tolist() == [5, 12, 20]  # 6x10 = 60 tokens <= 64 per frame
    ids = batch["input_ids"][0]
    assert int((ids == proc.video_token_id).sum()) == 5 * 60
    assert int((ids == proc.frame_separator_token_id).sum()) == 5
    text = tokenizer.decode(ids)
    assert [f"<t={t:.1f}s>" in text for t in clip.timestamps] == [True] * 5


def test_chat_template_and_plain_fallback(rng):
    image = random_image(rng, 64, 64)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": " hi"}]}]
    for template in (True, False):
        config, tokenizer = tiny_config("qwen3", chat_template=template)
        proc = TempFlexProcessor(tokenizer, ProcessorSettings.from_config(config))
        rendered = proc.apply_chat_template(messages)
        assert ("<|start|>user" in rendered) is template
        assert rendered.endswith("Assistant:") is (not template)
        batch = proc.prepare(messages)
        assert int((batch["input_ids"] == proc.image_token_id).sum()) == 4
    assert plain_chat([{"role": "user", "content": "x"}]) == "User: x\nAssistant:"


def test_left_padding_for_batched_generation(proc):
    batch = proc(["short", "a much longer prompt here"])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1


@pytest.mark.parametrize(
    "prompt, n_images, message",
    [
        ("<image> <image>", 1, "2 <image> placeholders but 1 image was given"),
        ("no placeholder", 1, "0 <image> placeholders but 1 image was given"),
    ],
)
def test_placeholder_count_mismatch(proc, rng, prompt, n_images, message):
    with pytest.raises(ValueError, match=message):
        proc([prompt], images=[random_image(rng, 64, 64)] * n_images)


def test_video_placeholder_mismatch(proc, rng):
    with pytest.raises(ValueError, match="1 <video> placeholder but 0 videos were given"):
        proc(["<video>"])


def test_reserved_token_in_text_is_caught(proc, rng):
    with pytest.raises(ValueError, match="reserved token"):
        proc(["<image> and a stray <|image_pad|>"], images=[random_image(rng, 64, 64)])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 10, 3), np.uint8), "zero-size image"),
        (np.zeros((10, 10), np.float32), "expected uint8 pixels"),
        (torch.zeros(10, 10, 3), "expected uint8 pixels"),
        (np.zeros((4, 1000, 3), np.uint8), "aspect ratio"),
    ],
)
def test_bad_images_are_one_line_errors(proc, image, message):
    with pytest.raises(ValueError, match=message) as err:
        proc(["<image>"], images=[image])
    assert "\n" not in str(err.value)


def test_unknown_message_part(proc):
    with pytest.raises(ValueError, match="unknown message part type 'audio'"):
        proc.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])


def test_video_timestamps_must_match_frames(rng):
    with pytest.raises(ValueError, match="3 frames but 2 timestamps"):
        VideoClip(rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8), timestamps=[0.0, 1.0])


def test_processor_round_trip(tmp_path, proc, rng):
    proc.save_pretrained(tmp_path)
    again = TempFlexProcessor.from_pretrained(tmp_path)
    image = random_image(rng, 80, 120)
    a, b = proc(["x <image>"], images=[image]), again(["x <image>"], images=[image])
    for key in a:
        assert torch.equal(a[key], b[key])
    with pytest.raises(FileNotFoundError, match="not a saved TempFlexProcessor"):
        TempFlexProcessor.from_pretrained(tmp_path / "nowhere")


def test_tokenizer_without_placeholders_is_rejected():
    from conftest import make_tokenizer

    with pytest.raises(ValueError, match="lacks the placeholder tokens"):
        TempFlexProcessor(make_tokenizer())


def test_images_from_paths_are_loaded_upright(proc, tmp_path):
    """A file path goes through load_image: a JPEG stored sideways with EXIF orientation 6 comes out upright."""
    photo = Image.open(skimage_photo("astronaut.png")).convert("RGB").resize((128, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo.save(tmp_path / "sideways.jpg", exif=exif)
    batch = proc(["<image>"], images=[tmp_path / "sideways.jpg"])
    assert batch["image_grid_thw"][0].tolist() == [1, 8, 4]  # displayed 64 wide x 128 tall
    with pytest.raises(ValueError, match="nothing.png"):
        proc(["<image>"], images=[tmp_path / "nothing.png"])


def test_processor_takes_decoded_videos_and_grayscale_arrays(proc, rng):
    from tempflex.samples import sample_videos
    from tempflex.video import load_video

    video = load_video(next(p for p in sample_videos() if p.name == "bikes.mp4"), num_frames=3)
    gray = rng.integers(0, 256, (64, 96), dtype=np.uint8)  # (H, W): load_image makes it RGB
    batch = proc(["<image> <video>"], images=[gray], videos=[video])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 6]] and batch["video_grid_thw"][0, 0] == 3
    with pytest.raises(TypeError, match="a video must be"):
        proc(["<video>"], videos=["not a video"])


def test_unknown_processor_setting_is_named(tmp_path, proc):
    proc.save_pretrained(tmp_path)
    settings = tmp_path / "processor_config.json"
    import json

    settings.write_text(json.dumps({**json.loads(settings.read_text()), "colour": "red"}))
    with pytest.raises(ValueError, match=r"unknown settings \['colour'\]"):
        TempFlexProcessor.from_pretrained(tmp_path)


def test_free_generation_stops_at_the_end_of_the_turn():
    """Without a chat template the fallback template's next role line ends the answer (stop strings, and a trim of
    what a stop string left); a tokenizer's end-of-turn token joins EOS."""
    from conftest import tiny_model

    model, processor = tiny_model("qwen3", chat_template=False)
    batch = processor(processor.apply_chat_template([{"role": "user", "content": "Hi"}]))
    length = batch["input_ids"].shape[1]
    kwargs = processor.generation_kwargs(length)
    assert processor.stop_strings() == ("\nUser:", "\nAssistant:", "\nSystem:")
    assert processor.tokenizer.eos_token_id in kwargs["eos_token_id"]
    [stop] = kwargs["stopping_criteria"]  # it reads only the generated tokens: the prompt's own role lines pass
    said = processor.tokenizer(" up.\nUser: more", add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert not stop(batch["input_ids"], None).any() and stop(torch.cat([batch["input_ids"], said], 1), None).all()
    assert processor.trim_answer(" It moves up.\nUser: What?\nAssistant: up") == "It moves up."
    assert processor.trim_answer("left\nAssistant:") == "left" and processor.trim_answer(" plain ") == "plain"
    _, templated = tiny_model("qwen3")
    assert templated.stop_strings() == () and "stopping_criteria" not in templated.generation_kwargs(length)
    out = model.generate(**batch, max_new_tokens=6, do_sample=False, **kwargs)  # the real generate takes them
    assert out.shape[1] <= batch["input_ids"].shape[1] + 6
