"""The stage-0 head's accuracy per skill on a test split, from a stage-0 run's last periodic checkpoint (the head is
saved only there; ``final/`` holds the model alone). Camera direction is also split by whether the pan shows its
landmark (docs/tempflex_tiny.md, findings 18-19).

    .venv/bin/python benchmarks/stage0_head.py recipes/tempflex-tiny/stage0_curriculum.yaml --test runs/probes-seed1
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch


def subset(data, index: list[int]):
    """The records ``index`` of an OptionBatchSource."""
    t = torch.tensor(index)
    return replace(data, patches=data.patches[t], question=data.question[t], options=data.options[t],
                   option_mask=data.option_mask[t], answer=data.answer[t], skills=[data.skills[i] for i in index],
                   said=data.said[t], prompt=None if data.prompt is None else data.prompt[t], sources=None)


def main() -> None:
    from tempflex.train.build import build_model
    from tempflex.train.recipe import load_recipe
    from tempflex.train.warmup import OptionHead, load_option_records, option_accuracy, option_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path, help="the stage-0 recipe the run was trained with")
    parser.add_argument("--test", type=Path, default=Path("runs/probes-seed1"), help="probe set with a test split")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe)
    found = sorted(Path(recipe.output_dir).glob("checkpoint-*/state.pt"), key=lambda p: int(p.parent.name[11:]))
    if not found:
        raise SystemExit(f"error: no checkpoint with a head in {recipe.output_dir}")
    state = torch.load(found[-1], weights_only=False)
    model, processor = build_model(recipe.model, recipe.seed)
    model.load_state_dict(state["model"])
    records, *_ = option_records(recipe.data.mixture)
    vocab = sorted({o for r in records for o in r["options"]})  # the head's classes, as the trainer made them
    tests, *_ = option_records(args.test / "mixture_test.yaml")
    test = load_option_records(tests, args.test, model, processor, recipe.data.num_frames, vocab)
    head = OptionHead(model.config.text_config.hidden_size, test.patches.shape[1] // model.config.merge_size ** 2,
                      len(vocab))
    head.load_state_dict(state["head"])
    result = {k: round(v, 3) for k, v in option_accuracy(model, head, test).items()}
    for flag in (True, False):
        index = [i for i, r in enumerate(tests) if r["skill"] == "camera_direction" and r["params"]["landmark"] == flag]
        if index:
            result[f"camera_direction landmark={flag}"] = round(option_accuracy(model, head, subset(test, index))["all"], 3)
    print(found[-1].parent, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
