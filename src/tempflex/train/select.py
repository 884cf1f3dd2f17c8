"""Student views made inside the forward: FluxViT's group-dynamic selector (or a UMT-style random student mask) on
the largest view's merged tokens, for multi-token-count co-training (``cotrain: {select: flux | mask}``).

FluxViT tunes "with the flexi-sampling method and group-dynamic selector for the trained student model"
(shared/papers/fluxvit-paper.txt, section 3.2) and co-trains three token counts in one batch (section 3.4). Here the
encoder, TFF and merger run once on the largest view of a micro-batch; the teacher reads every merged token, and each
student the b * T tokens of each video that the selector keeps for its budget of b tokens a frame, exactly
(``tempflex.budget.reducers.GroupDynamic``, the inference ``flux`` reducer). The selection is made on detached tokens;
the kept tokens are gathered from the live ones, so the student's loss reaches the encoder and the merger through
exactly the tokens it kept. Each view's prompt is the largest view's with the dropped placeholders taken out, as the
inference pipeline writes it (docs/budget.md): a frame keeps as many placeholders as tokens, and a frame that keeps
none loses its separator and its time tag too. An optional word bridge (not in the paper) reads exactly the kept
tokens of each video (``WordBridge.read``'s layout), all videos of the view in one pass, as at inference.

``mask`` is the student side of UMT's masking (FluxViT's "Double Mask Module" keeps it for the student): each student
sees a random subset of the teacher's tokens, b random places of every frame, drawn from a generator seeded by the
video's pixels and the budget, so a sample is masked alike on any number of processes and after a resume. UMT chooses that subset by the teacher's CLS attention and aligns the student's
encoder features to the teacher's; neither carries over as such (docs/training.md says why), so here the random mask
is the student's input and the alignment is the same answer distillation as for the other views.

Shapes: B rows, L text length, V visual tokens of the batch, T frames, h x w merged grid, E LLM width.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tempflex.budget.base import VisualTokens
from tempflex.budget.reducers import GroupDynamic
from tempflex.modeling import IGNORE_INDEX, prompt_mask

METHODS = ("flux", "mask")  # the in-forward selections; "resize" (the default) makes its views in the dataset


@dataclass(frozen=True)
class TokenSelect:
    """How the student views are selected from the largest view's merged tokens."""

    method: Literal["flux", "mask"]  # flux: FluxViT's group-dynamic selector; mask: UMT-style random student mask
    groups: int = 4  # flux: sparse groups of consecutive frames (FluxViT's N; its table 2 found 4 the best)
    p: float = 2.0  # flux: the norm of the dynamic value D = ||x_t - x_t-1||_p

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown token selection {self.method!r}; choose one of {', '.join(METHODS)}")
        GroupDynamic(self.groups, self.p)  # validates groups and p

    def keep(self, tokens: VisualTokens, per_frame: int, seed: int = 0) -> torch.Tensor:
        """Indices (K,) into one video's tokens (T*h*w, in (t, row, col) order) of the K = per_frame * T it keeps
        (``seed``: the mask's draw)."""
        t, (h, w) = tokens.frames, tokens.grid
        if per_frame >= h * w:
            raise ValueError(f"cotrain.budgets: a student budget of {per_frame} tokens a frame is not below the "
                             f"{h * w} tokens a frame of the largest view ({t} x {h} x {w}); lower it or raise the "
                             "largest budget")
        if self.method == "flux":
            return GroupDynamic(self.groups, self.p).reduce(tokens, per_frame * t).keys
        draw = torch.Generator().manual_seed((seed * 1009 + per_frame) % (2**61 - 1))
        places = torch.rand(t, h * w, generator=draw).argsort(dim=1)[:, :per_frame].sort(dim=1).values  # (T, b)
        return (places + torch.arange(t)[:, None] * (h * w)).flatten()  # (T*b,)


@dataclass
class Video:
    """One video of the batch: its live merged tokens, grid and the batch row whose prompt holds it."""

    tokens: torch.Tensor  # (T*h*w, E), with gradients
    frames: int  # T
    grid: tuple[int, int]  # (h, w)
    row: int  # the batch row whose prompt holds it
    seed: int = 0  # a hash of its pixels: the random mask's draw

    def detached(self) -> VisualTokens:
        """The tokens without gradients, in the budget plug-ins' type (what the selector reads)."""
        t, (h, w) = self.frames, self.grid
        return VisualTokens.from_features(self.tokens.detach(), (t, h, w), 1, None)


def pixel_seed(pixels: torch.Tensor) -> int:
    """A 62-bit seed from a video's patches (its content, not its place in the batch or the step)."""
    data = pixels.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 2


def batch_videos(model: nn.Module, batch: dict, device: torch.device) -> list[Video]:
    """The batch's videos through one encoder + TFF + merger pass, each with the row whose placeholders it fills."""
    grid = batch["video_grid_thw"]  # (N, 3) in patches
    pixels = batch["pixel_values_videos"]  # (sum T*H*W, K)
    seeds = [pixel_seed(part) for part in pixels.split(grid.prod(dim=-1).tolist())]
    features = model.get_video_features(pixels.to(device), grid)  # (V, E)
    m = model.config.merge_size
    shapes = [(t, h // m, w // m) for t, h, w in grid.tolist()]
    parts = features.split([t * h * w for t, h, w in shapes])
    slots = (batch["input_ids"] == model.config.video_token_id).sum(dim=1).tolist()  # (B,) placeholders per row
    videos, row, used = [], 0, 0
    for part, (t, h, w), seed in zip(parts, shapes, seeds):
        while row < len(slots) and used >= slots[row]:
            row, used = row + 1, 0
        videos.append(Video(part, t, (h, w), min(row, len(slots) - 1), seed))
        used += len(part)
    return videos


def row_keep(ids: torch.Tensor, videos: list[tuple[Video, torch.Tensor]], video_id: int, sep_id: int) -> torch.Tensor:
    """(L,) bool: the positions of one row's prompt that a view keeps, given each of its videos with the indices of
    its kept tokens. A frame keeps its first k placeholders; a frame with none also loses its separator and the
    text between the previous separator and it (its time tag; a first frame's tag cannot be told from the prompt)."""
    keep = torch.ones_like(ids, dtype=torch.bool)
    places = (ids == video_id).nonzero().flatten()  # (slots,) in order
    start = 0
    for video, kept in videos:
        h, w = video.grid
        counts = torch.bincount(kept // (h * w), minlength=video.frames).tolist()  # (T,) kept a frame
        for t, count in enumerate(counts):
            frame = places[start + t * h * w : start + (t + 1) * h * w]
            keep[frame[count:]] = False
            if count == 0:
                end = int(frame[-1]) + 1  # the separator after the frame's placeholders
                if end < len(ids) and int(ids[end]) == sep_id:
                    keep[end] = False
                if t > 0:  # the tag: after the previous frame's separator, before this frame
                    keep[int(places[start + t * h * w - 1]) + 2 : int(frame[0])] = False
        start += video.frames * h * w
    return keep


def pad_rows(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    """Rows of different lengths -> (B, L_max), right-padded with ``value`` (the collate's layout)."""
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def bridge_videos(model: nn.Module, chosen: list[tuple[Video, torch.Tensor]], ids: torch.Tensor,
                  mask: torch.Tensor) -> list[torch.Tensor]:
    """Each video's kept tokens (K, E) with the optional bridge's word read from exactly them (``WordBridge.read``'s
    layout: frames without tokens skipped, dropped places masked), all videos of the view in one bridge pass."""
    kept = [v.tokens[k] for v, k in chosen]
    if model.bridge is None:
        return kept
    items, masks, ats = [], [], []
    for (video, index), tokens in zip(chosen, kept):
        h, w = video.grid
        frames, places = index // (h * w), index % (h * w)
        _, rank = torch.unique_consecutive(frames, return_inverse=True)
        padded = tokens.new_zeros(int(rank.max()) + 1, int(places.max()) + 1, tokens.shape[-1])  # (F', T', E)
        padded[rank, places] = tokens
        seen = torch.zeros(padded.shape[:2], dtype=torch.bool, device=tokens.device)
        seen[rank, places] = True
        items.append(padded), masks.append(seen), ats.append((rank, places))
    queries = model.bridge_queries(ids, mask)  # (B, E) or None
    if queries is not None:
        queries = queries[torch.tensor([v.row for v, _ in chosen], device=queries.device)]  # (N, E)
    read, _ = model.bridge(items, model.get_input_embeddings(), masks, queries)
    return [r[at] for r, at in zip(read, ats)]


def view(model: nn.Module, batch: dict, videos: list[Video], kept: list[torch.Tensor], device: torch.device) -> dict:
    """The model inputs of one view (``inputs_embeds``, ``attention_mask``, ``labels``) whose videos keep ``kept``."""
    config = model.config
    rows, labels, masks = [], [], []
    for r in range(batch["input_ids"].shape[0]):
        mine = [(v, k) for v, k in zip(videos, kept) if v.row == r]
        keep = row_keep(batch["input_ids"][r], mine, config.video_token_id, config.frame_separator_token_id)
        rows.append(batch["input_ids"][r][keep])
        labels.append(batch["labels"][r][keep])
        masks.append(batch["attention_mask"][r][keep])
    padding = batch["input_ids"][batch["attention_mask"] == 0]
    ids = pad_rows(rows, int(padding[0]) if len(padding) else 0).to(device)  # (B, L'); padding is masked out
    mask = pad_rows(masks, 0).to(device)
    labels = pad_rows(labels, IGNORE_INDEX).to(device)
    visual = bridge_videos(model, list(zip(videos, kept)), ids, prompt_mask(mask, labels))  # queries skip the answer
    embeds = model.get_input_embeddings()(ids)  # (B, L', E)
    slots = (ids == config.video_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(slots, torch.cat(visual).to(embeds.dtype))
    return {"input_ids": ids, "inputs_embeds": embeds, "attention_mask": mask,  # the model reads the embeddings
            "labels": labels}


def selected_views(model: nn.Module, batch: dict, budgets: list[int], select: TokenSelect,
                   device: torch.device) -> list[dict]:
    """One view per budget, largest first: the largest view's every token, then each student's selection."""
    if "pixel_values" in batch:
        raise ValueError(f"cotrain.select={select.method} selects video tokens; this batch holds images "
                         "(use select: resize for mixtures with images)")
    if "pixel_values_videos" not in batch:
        raise ValueError(f"cotrain.select={select.method}: a micro-batch without videos has no tokens to select")
    videos = batch_videos(model, batch, device)
    everything = [torch.arange(len(v.tokens), device=v.tokens.device) for v in videos]
    views = [view(model, batch, videos, everything, device)]
    for budget in budgets[1:]:
        kept = [select.keep(v.detached(), budget, v.seed).to(v.tokens.device) for v in videos]
        views.append(view(model, batch, videos, kept, device))
    return views
