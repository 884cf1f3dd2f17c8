"""The stage-0 head's accuracy per skill on a test split, from a stage-0 run's last periodic checkpoint (the head is
saved only there, in the options objective's state ``objective.pt``; ``final/`` holds the model alone). Camera direction is also split by whether the pan shows its
landmark (docs/tempflex_tiny.md). With ``--bridge`` (a run whose model has the word bridge, such as stage 1) also
the bridge's own choice: the option whose first answer token it gives the highest logit, the word the frozen LLM is
handed; a minute without the LLM's layers against several for ``tempflex probes eval``.

    .venv/bin/python benchmarks/stage0_head.py recipes/tempflex-tiny/stage0_warmup.yaml --test runs/probes-seed1
    .venv/bin/python benchmarks/stage0_head.py recipes/tempflex-tiny/stage1_align.yaml --bridge   # stage 1's too
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


@torch.no_grad()
def bridge_accuracy(model, processor, data, records: list[dict], batch: int = 64) -> dict[str, float]:
    """Per skill: how often the bridge's logits rank the right option's first answer token above the others'."""
    from collections import defaultdict

    from tempflex.answers import answer_tokens
    from tempflex.train.objectives.option_head import visual_tokens

    model.eval()
    hits: dict[str, list[int]] = defaultdict(list)
    spoken: dict[tuple[str, ...], torch.Tensor] = {}
    for start in range(0, len(data), batch):
        index = torch.arange(start, min(start + batch, len(data)))
        patches, grids, *_, prompt = data.batch(index)
        _, logits = visual_tokens(model, patches, grids, len(index), prompt)  # (n, W) the bridge's
        for i, row in zip(index.tolist(), logits):
            options = tuple(records[i]["options"])
            if options not in spoken:
                spoken[options] = torch.tensor(answer_tokens(processor, options).ids)
            ids = spoken[options]
            ok = int(int(row[ids].argmax()) == records[i]["answer_index"])
            hits[data.skills[i]].append(ok), hits["all"].append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def main() -> None:
    from tempflex.train.build import build_model
    from tempflex.train.checkpoint import MODEL_DIR, OBJECTIVE_FILE, Checkpoints, load_weights
    from tempflex.train.objectives.option_data import load_option_records, option_records
    from tempflex.train.objectives.option_head import OptionHead, option_accuracy
    from tempflex.train.recipe import load_recipe

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path, help="the stage-0 recipe the run was trained with")
    parser.add_argument("--test", type=Path, default=Path("runs/probes-seed1"), help="probe set with a test split")
    parser.add_argument("--bridge", action="store_true", help="also score the word bridge's choice")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value, as for tempflex train")
    args = parser.parse_intermixed_args()
    recipe = load_recipe(args.recipe, args.overrides)
    found = sorted(Path(recipe.output_dir).glob(f"checkpoint-*/{OBJECTIVE_FILE}"),
                   key=lambda p: int(p.parent.name[11:]))
    if not found:
        raise SystemExit(f"error: no checkpoint with a head ({OBJECTIVE_FILE}) in {recipe.output_dir}")
    state = Checkpoints.load_objective(found[-1].parent)
    model, processor = build_model(recipe.model, recipe.seed)
    load_weights(model, found[-1].parent / MODEL_DIR)
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
            scored = option_accuracy(model, head, subset(test, index))
            result[f"camera_direction landmark={flag}"] = round(scored["all"], 3)
    if args.bridge:  # the run's final model when it has one (the head is only in the checkpoints)
        final = Path(recipe.output_dir) / "final"
        if final.is_dir():
            from tempflex.modeling import TempFlexForConditionalGeneration

            model = TempFlexForConditionalGeneration.from_pretrained(final)
        if model.bridge is None:
            raise SystemExit(f"error: the model of {recipe.output_dir} has no word bridge")
        scored = bridge_accuracy(model, processor, test, tests)
        source = final if final.is_dir() else found[-1].parent
        result[f"bridge ({source})"] = {k: round(v, 3) for k, v in scored.items()}
    print(found[-1].parent, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
