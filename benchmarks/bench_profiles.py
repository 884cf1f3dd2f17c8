"""Encoder seconds per 1448x1448 image under each token profile (tempflex.tokens.PROFILES), side by side.

How to run (a few minutes on 2 CPU cores with the defaults):
    .venv/bin/python benchmarks/bench_profiles.py
    .venv/bin/python benchmarks/bench_profiles.py --layers 27 --repeats 1   # the whole so400m tower (slow on CPU)

The encoder is the paper's SigLIP2 so400m-patch16-naflex geometry (width 1152, MLP 4304, 16 heads; random weights:
no pretrained tower can be had here, and the time does not depend on the weights) with its position table extended
to 2048 entries as ``assemble`` does. By default it keeps ``--layers`` of its 27 layers and scales the time by
27 / layers (every layer costs the same at a given patch count; the patch embedding and position resize are a
small part), so the table also shows the measured time. Each profile's image is the processor's own: a real photo
(scikit-image's astronaut, resized to 1448x1448) through ``TempFlexProcessor.encode_media`` under that profile's
``image_max_tokens``. Reported: patches, merged tokens, median seconds over ``--repeats`` runs after one warm-up,
the profiles run alternately, and the ratio to the first profile.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table
from transformers import Siglip2VisionConfig, Siglip2VisionModel

from tempflex.configuration import SO400M_NAFLEX, TempFlexConfig
from tempflex.hub.assemble import add_placeholder_tokens
from tempflex.processing import ProcessorSettings, TempFlexProcessor
from tempflex.tokens import PROFILES
from tempflex.train.build import builtin_tokenizer
from tempflex.vision.encoder import encode_grids, extend_position_table

FULL_LAYERS = 27


def photo(size: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC))  # (H, W, 3) uint8


def inputs(profile: str, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    settings = ProcessorSettings(image_max_tokens=PROFILES[profile].image_max_tokens)
    tokenizer = builtin_tokenizer()
    add_placeholder_tokens(tokenizer, TempFlexConfig())  # the processor checks that its placeholders exist
    media = TempFlexProcessor(tokenizer, settings).encode_media(images=[image]).tensors()
    return media["pixel_values"], media["image_grid_thw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=2, help="encoder layers run (27 = the whole tower)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=1448, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tower = Siglip2VisionModel(Siglip2VisionConfig(**{**SO400M_NAFLEX, "num_hidden_layers": args.layers})).eval()
    extend_position_table(tower, 2048)
    image = photo(args.size)
    prepared = {name: inputs(name, image) for name in PROFILES}
    times: dict[str, list[float]] = {name: [] for name in PROFILES}
    with torch.no_grad():
        for step in track(range(args.repeats + 1), description="encoding"):
            for name, (pixels, grid) in prepared.items():
                start = time.perf_counter()
                encode_grids(tower, pixels, grid)
                if step:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
    scale = FULL_LAYERS / args.layers
    table = Table(title=f"SigLIP2 so400m encoder, one {args.size}x{args.size} image, {torch.get_num_threads()} "
                        f"threads, {args.layers} of {FULL_LAYERS} layers run (x{scale:.1f})")
    for column in ("profile", "patches", "merged tokens", "grid (patches)", "measured s", f"{FULL_LAYERS}-layer s",
                   "ratio"):
        table.add_column(column, justify="right", no_wrap=True)
    first = None
    for name, (pixels, grid) in prepared.items():
        _, h, w = (int(v) for v in grid[0])
        seconds = statistics.median(times[name])
        first = first or seconds
        table.add_row(name, str(h * w), str(h * w // 4), f"{h}x{w}", f"{seconds:.2f}", f"{seconds * scale:.1f}",
                      f"{seconds / first:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
