"""Is a model's encoder still seeing? The spread of its output tokens and its captions of a few probe videos.

Spread = |std over the tokens of one video| / |mean token| of the encoder's output (0.19 for a random tempflex-tiny
encoder); a collapsed encoder tends to 0 and its model writes the same caption for every video.

    .venv/bin/python benchmarks/encoder_spread.py runs/tempflex-tiny/stage1/checkpoint-80/model --data runs/probes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tempflex.ask import Asker, load_media
from tempflex.vision.encoder import encode_grids


def spread(asker: Asker, video: Path) -> float:
    media = load_media(video=video, frames=asker.default_frames)
    enc = asker.processor.encode_media(videos=[media.data]).tensors()
    with torch.no_grad():
        feats = encode_grids(asker.model.vision_tower, enc["pixel_values_videos"], enc["video_grid_thw"])[0]
    x = feats.reshape(-1, feats.shape[-1])  # (F*P, D)
    return float(x.std(0).norm() / x.mean(0).norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=Path("runs/probes"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=6)
    args = parser.parse_args()
    asker = Asker(args.model)
    lines = (args.data / f"{args.split}.jsonl").read_text().splitlines()[: args.n]
    records = [json.loads(line) for line in lines]
    spreads = [spread(asker, args.data / r["video"]) for r in records]
    print(f"encoder spread: mean {sum(spreads) / len(spreads):.3f} over {len(spreads)} videos")
    for r in records:
        answer = asker.ask("Describe the video.", load_media(video=args.data / r["video"]), max_new_tokens=16)
        print(f"{r.get('caption', '')!r:70} -> {answer.text!r}")


if __name__ == "__main__":
    main()
