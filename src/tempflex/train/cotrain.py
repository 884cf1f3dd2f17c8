"""The training loss of one micro-batch: plain LM loss, or FluxViT multi-token-count co-training.

Shapes: B batch, L text length (differs per budget), V vocabulary, A answer tokens of the micro-batch.

Loss normalisation: the LM loss is a sum over answer tokens divided by ``num_items``, the answer tokens of the whole
global batch divided by (accumulation steps * processes). Accumulation (which divides by the steps) and the
data-parallel gradient mean (which divides by the processes) then give exactly the token mean over the global
batch, the same on 1 process or many, whatever the split of tokens between micro-batches.

Co-training (FluxViT, shared/papers/fluxvit-paper.txt section 3.4): the micro-batch comes as one batch per per-frame
token budget, largest first (the same samples, videos resized to the budget by the processor). Each is forwarded,
the LM losses are summed, and "the final aggregated features with the largest input [teach] the intermediate and
the intermediate [teaches] the smallest". For an MLLM the final aggregated output is the next-token distribution at
the answer positions; the budgets change only the number of visual tokens, so the answer tokens are the same and in
the same order in every budget's sequence and are aligned by the label mask. The distillation term is
KL(teacher || student) with the teacher detached, at temperature T (scaled by T^2), summed over answer tokens and
normalised like the LM loss: total = sum_b LM_b + w * sum_{b>0} KL(p_{b-1} || p_b).

With a token selection (``cotrain.select: flux`` or ``mask``, ``tempflex.train.select``) the dataset gives only the
largest view; the encoder runs once on it, the teacher reads all its tokens and each smaller budget's view is the
tokens the selector keeps, made inside the forward. The loss is the same sum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tempflex.modeling import IGNORE_INDEX
from tempflex.train.select import TokenSelect, selected_views

MODEL_KEYS = ("input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw", "pixel_values_videos",
              "video_grid_thw", "inputs_embeds")


@dataclass
class MicroLoss:
    """The loss to backpropagate and its parts (detached floats, already divided like the loss)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def count_answer_tokens(batch: dict) -> int:
    """Tokens the LM loss is taken on: labels after the shift (position 0 predicts nothing)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def model_inputs(batch: dict, device: torch.device) -> dict:
    return {k: batch[k].to(device) for k in MODEL_KEYS if k in batch}


def answer_forward(model: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward one batch, computing logits only where the next token is an answer token.

    Returns logits (B, K, V) and their targets (B, K) (IGNORE_INDEX where a row has no answer there), K the positions
    that predict an answer token in any row. The LM head of a 262k-token vocabulary (Gemma3) over every position
    costs as much as the LLM's layers; the loss needs it only at the answer positions."""
    inputs = model_inputs(batch, device)
    labels = inputs.pop("labels")
    targets = labels[:, 1:]  # (B, L-1): position t predicts token t+1
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)  # (K,)
    if keep.numel() == 0:  # nothing to learn here; one ignored position keeps the graph whole
        keep = torch.tensor([targets.shape[1] - 1], device=labels.device)
    out = model(**inputs, use_cache=False, logits_to_keep=keep)
    return out.logits, targets[:, keep]


def answer_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, K, V) logits and (B, K) targets -> (A, V): the answer tokens' predictions, batch then position order."""
    return logits[targets != IGNORE_INDEX]  # (A, V)


def answer_loss(logits: torch.Tensor, targets: torch.Tensor, num_items: float) -> torch.Tensor:
    """Summed cross-entropy of the answer tokens / num_items (the LM loss of transformers, on kept positions)."""
    flat = logits.float().reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum") / num_items


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, num_items: float) -> torch.Tensor:
    """sum_A KL(softmax(teacher/T) || softmax(student/T)) * T^2 / num_items; the teacher is detached."""
    if student.shape != teacher.shape:
        raise ValueError(f"co-training budgets disagree on the answer tokens: {tuple(student.shape)} vs "
                         f"{tuple(teacher.shape)} (was a sequence truncated in one budget only?)")
    log_t = F.log_softmax(teacher.detach().float() / temperature, dim=-1)  # (A, V)
    log_s = F.log_softmax(student.float() / temperature, dim=-1)  # (A, V)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum")
    return kl * temperature**2 / num_items


def idle_term(model: nn.Module, batch: dict) -> torch.Tensor | float:
    """0 * (sum of the trainable parameters this batch does not reach): TFF on a batch without videos, the whole
    visual path on a text-only batch. Every rank then produces a gradient for every parameter, which DeepSpeed
    ZeRO-2 needs (its gradient buckets must match across ranks) and which spares DDP an unused-parameter search."""
    has_video = "pixel_values_videos" in batch
    has_image = "pixel_values" in batch
    idle = []
    if model.temporal is not None and not (has_video or (has_image and model.config.tff_on_images)):
        idle.append(model.temporal)
    if not (has_video or has_image):
        idle += [model.vision_tower, model.merger]
    params = [p for module in idle for p in module.parameters() if p.requires_grad]
    return sum(p.sum() for p in params) * 0.0 if params else 0.0


def lm_loss(model: nn.Module, batch: dict, num_items: float, device: torch.device) -> MicroLoss:
    loss = answer_loss(*answer_forward(model, batch, device), num_items)
    return MicroLoss(loss, {"lm": float(loss.detach())})


def cotrain_loss(
    model: nn.Module, batches: list[dict], num_items: float, device: torch.device, *, weight: float,
    temperature: float, budgets: list[int], select: TokenSelect | None = None,
) -> MicroLoss:
    """Sum of the LM losses over budgets (largest first) plus the chained self-distillation. ``select``: the views
    are made from ``batches``' one (largest) view by that token selection; None: the dataset made one per budget."""
    if select is not None:
        if len(batches) != 1:
            raise ValueError(f"cotrain.select={select.method} takes the largest view alone, the dataset gave "
                             f"{len(batches)} views of a sample")
        batches = selected_views(model, batches[0], budgets, select, device)
    if len(batches) != len(budgets):
        raise ValueError(f"the dataset gave {len(batches)} views of a sample, the recipe has {len(budgets)} budgets")
    total, parts, teacher = None, {}, None
    for budget, batch in zip(budgets, batches):
        logits, targets = answer_forward(model, batch, device)  # (B, K, V), (B, K)
        loss = answer_loss(logits, targets, num_items)
        parts[f"lm_{budget}"] = float(loss.detach())
        student = answer_logits(logits, targets)  # (A, V)
        if teacher is not None and weight > 0:
            kl = distill_kl(student, teacher, temperature, num_items)
            parts[f"kl_{budget}"] = float(kl.detach())
            loss = loss + weight * kl
        teacher = student.detach()
        total = loss if total is None else total + loss
    return MicroLoss(total, parts)
