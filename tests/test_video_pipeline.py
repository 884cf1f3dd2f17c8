"""A real video file through the whole input path: decode -> frames + timestamps -> processor -> tiny model."""

import re

import torch
from conftest import tiny_model

from tempflex.samples import sample_videos
from tempflex.video import load_video


def test_bigbuckbunny_to_model_with_time_tags():
    path = next(p for p in sample_videos() if p.name == "bigbuckbunny.mp4")
    video = load_video(path, num_frames=8)
    assert video.frames.shape == (8, 720, 1280, 3)
    model, proc = tiny_model("qwen3", video_timestamps=True)
    batch = proc(["<video> What happens?"], videos=[video.to_clip()])
    assert batch["video_grid_thw"].tolist() == [[8, 12, 20]]  # one 320x192 grid for all frames, 60 tokens each
    text = proc.tokenizer.decode(batch["input_ids"][0])
    tags = [float(t) for t in re.findall(r"<t=([0-9.]+)s>", text)]
    assert tags == [round(t, 1) for t in video.timestamps]
    assert all(abs(a - b) <= 1 / 25 for a, b in zip(video.timestamps, [(i + 0.5) * video.duration / 8 for i in range(8)]))
    with torch.no_grad():
        out = model(**batch)
    assert out.video_embeds.shape == (8 * 60, 32)
