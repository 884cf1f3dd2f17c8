"""The token-budget contract: ``VisualTokens``, the four plug-in Protocols, and one registry.

Shapes: T frames of the clip, h x w merged-token grid per frame, N tokens, E LLM width, S segments.

Data flow (docs/budget.md): a ``FrameSelector`` picks frames before encoding; the model turns them into
``VisualTokens``; a ``TokenReducer`` keeps at most ``budget`` of them (an ``ata`` reducer asks a
``BudgetAllocator`` how many each segment gets); a ``TimestampEncoder`` writes the time tags whose text tokens
count against the same budget. Plug-ins register under ``(kind, name)``; ``build(kind, name, **options)`` makes one.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import torch

KINDS = ("selector", "reducer", "allocator", "timestamps")
REGISTRY: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
BUILTIN_MODULES = (  # imported on first use of the registry, not at import time
    "tempflex.budget.selectors",
    "tempflex.budget.reducers",
    "tempflex.budget.ata",
    "tempflex.budget.allocators",
    "tempflex.budget.timestamps",
    "tempflex.budget.merging",
    "tempflex.budget.holitom",
    "tempflex.budget.keyframes",
    "tempflex.budget.queryframes",
)
ENTRY_POINT_GROUP = "tempflex.budget"  # other packages add plug-ins here: the module registers on import


class BudgetError(ValueError):
    """A budget that cannot be met, or a budget plug-in asked for with a bad name or option."""


# -- the tokens that travel between the steps ------------------------------------------------------------------------
@dataclass(frozen=True)
class VisualTokens:
    """Merged visual tokens of one clip (or a subset of them), always in (t, h, w) order.

    ``positions`` are the tokens' places in the merged grid of the full clip, so a subset still knows where each
    token came from; ``timestamps`` are the seconds of each token's frame (NaN when the clip has no times).
    """

    tokens: torch.Tensor  # (N, E)
    positions: torch.Tensor  # (N, 3) long: (t, row, col) in the full clip's merged grid
    timestamps: torch.Tensor  # (N,) float64 seconds of the token's frame; NaN when unknown
    frames: int  # T, frames of the full clip
    grid: tuple[int, int]  # (h, w), merged tokens per frame side

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.dim() != 2:
            raise ValueError(f"tokens must be (N, E), got {tuple(self.tokens.shape)}")
        if tuple(self.positions.shape) != (n, 3) or self.positions.dtype != torch.long:
            raise ValueError(f"positions must be a ({n}, 3) long tensor, got {tuple(self.positions.shape)} "
                             f"{self.positions.dtype}")
        if tuple(self.timestamps.shape) != (n,):
            raise ValueError(f"timestamps must be ({n},), got {tuple(self.timestamps.shape)}")
        h, w = self.grid
        if self.frames < 1 or h < 1 or w < 1:
            raise ValueError(f"a clip needs >= 1 frame and a non-empty grid, got {self.frames} x {h} x {w}")
        if n:
            lo, hi = self.positions.amin(dim=0), self.positions.amax(dim=0)  # (3,); min(dim=) is slow on long
            if lo.min() < 0 or hi[0] >= self.frames or hi[1] >= h or hi[2] >= w:
                raise ValueError(f"positions outside the {self.frames} x {h} x {w} grid")
            if n > 1 and not bool((self.keys[1:] > self.keys[:-1]).all()):
                raise ValueError("positions must be unique and in (t, h, w) order")

    @classmethod
    def from_features(
        cls, features: torch.Tensor, grid_thw: Sequence[int], merge_size: int, timestamps: Sequence[float] | None
    ) -> VisualTokens:
        """The model's (T*h*w, E) frame-major features of one clip whose patch grid is [T, H, W]."""
        t, big_h, big_w = (int(v) for v in grid_thw)
        h, w = big_h // merge_size, big_w // merge_size
        if features.shape[0] != t * h * w:
            raise ValueError(f"{features.shape[0]} features for a {t} x {h} x {w} merged grid")
        tt, rows, cols = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
        positions = torch.stack([tt, rows, cols], dim=-1).reshape(-1, 3)  # (T*h*w, 3), row-major like the merger
        times = torch.full((t,), math.nan, dtype=torch.float64)
        if timestamps is not None:
            if len(timestamps) != t:
                raise ValueError(f"{len(timestamps)} timestamps for {t} frames")
            times = torch.tensor([float(s) for s in timestamps], dtype=torch.float64)
        return cls(features, positions, times[positions[:, 0]], t, (h, w))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def keys(self) -> torch.Tensor:
        """(N,) long: the flat index of each token in the full clip, increasing."""
        h, w = self.grid
        return (self.positions[:, 0] * h + self.positions[:, 1]) * w + self.positions[:, 2]

    def select(self, index: torch.Tensor | Sequence[int]) -> VisualTokens:
        """The tokens at ``index`` (positions in this object, or a (N,) bool mask), in (t, h, w) order."""
        index = torch.as_tensor(index).to(self.positions.device)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = torch.unique(index.long())  # sorted; our order is (t, h, w) order
        tokens = self.tokens[index.to(self.tokens.device)]
        return VisualTokens(tokens, self.positions[index], self.timestamps[index], self.frames, self.grid)

    def tokens_per_frame(self) -> torch.Tensor:
        """(T,) long: how many tokens each frame of the clip keeps."""
        return torch.bincount(self.positions[:, 0], minlength=self.frames)

    def frame_index(self) -> torch.Tensor:
        """(T, h, w) long: the index of the token at each grid place, -1 where none is kept."""
        h, w = self.grid
        dense = torch.full((self.frames * h * w,), -1, dtype=torch.long)
        dense[self.keys] = torch.arange(len(self))
        return dense.reshape(self.frames, h, w)

    def frame_timestamps(self) -> list[float]:
        """(T,) seconds of every frame that keeps a token, NaN for the others and for unknown times."""
        times = torch.full((self.frames,), math.nan, dtype=torch.float64)
        times[self.positions[:, 0]] = self.timestamps
        return times.tolist()


# -- the plug-in contracts ---------------------------------------------------------------------------------------
@runtime_checkable
class FrameSelector(Protocol):
    def select(
        self, available: int | Sequence[float], want: int, *, frames: torch.Tensor | None = None,
        query: str | None = None,
    ) -> list[int]:
        """Sorted unique indices of at most ``want`` frames out of ``available`` (a count or the frame times);
        ``frames`` (T, H, W, 3) uint8 for content-based selectors, ``query`` for query-aware ones."""


@runtime_checkable
class TokenReducer(Protocol):
    def reduce(self, tokens: VisualTokens, budget: int, *, scores: torch.Tensor | None = None) -> VisualTokens:
        """A subset of ``tokens`` with ``len(out) <= budget``; ``scores`` are the reducer's own optional input
        (per-segment relevance for ``ata``)."""


@runtime_checkable
class QueryAwareReducer(TokenReducer, Protocol):
    """A reducer whose ``scores`` are one relevance score per segment, which the pipeline asks the model for."""

    def segments(self, frames: int) -> list[range]:
        """The frame ranges that get one relevance score each."""


@runtime_checkable
class BudgetAllocator(Protocol):
    def allocate(self, scores: torch.Tensor, budget: int, min_per: int, max_per: int) -> torch.Tensor:
        """(S,) scores -> (S,) long counts in [min_per, max_per], sum == budget when S*min_per <= budget <=
        S*max_per, S*max_per above that; never fewer for a higher score; ``BudgetError`` below S*min_per."""


@runtime_checkable
class TimestampEncoder(Protocol):
    def tags(self, timestamps: Sequence[float]) -> list[str]:
        """One tag per given frame ("" for none), written before that frame's tokens."""

    def count(self, tokenizer: Any, tags: Sequence[str]) -> int:
        """Text tokens the tags cost under ``tokenizer``."""


# -- registry ----------------------------------------------------------------------------------------------------
def register(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator: make ``cls(**options)`` available as ``build(kind, name, **options)``."""
    if kind not in REGISTRY:
        raise ValueError(f"unknown plug-in kind {kind!r}; kinds: {', '.join(KINDS)}")

    def add(cls: type) -> type:
        if name in REGISTRY[kind] and REGISTRY[kind][name] is not cls:
            raise ValueError(f"a {kind} named {name!r} is already registered ({REGISTRY[kind][name].__name__})")
        REGISTRY[kind][name] = cls
        return cls

    return add


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def available(kind: str) -> list[str]:
    """Registered names of one kind (built-ins and those already loaded)."""
    if kind not in REGISTRY:
        raise BudgetError(f"unknown plug-in kind {kind!r}; kinds: {', '.join(KINDS)}")
    _load_builtins()
    return sorted(REGISTRY[kind])


def lookup(kind: str, name: str) -> type:
    """The registered class; entry points are loaded only for a name the built-ins lack."""
    names = available(kind)
    if name not in REGISTRY[kind]:
        _load_entry_points()
    if name not in REGISTRY[kind]:
        raise BudgetError(f"unknown {kind} {name!r}; available: {', '.join(names)}")
    return REGISTRY[kind][name]


def build(kind: str, name: str, **options: Any) -> Any:
    """A plug-in from its name and options; a bad option is one ``BudgetError`` listing the valid ones."""
    cls = lookup(kind, name)
    fields = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(options) - set(fields)) if dataclasses.is_dataclass(cls) else []
    if unknown:
        valid = ", ".join(fields) or "none"
        raise BudgetError(f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; options: {valid}")
    try:
        return cls(**options)
    except (TypeError, ValueError) as err:
        raise BudgetError(f"{kind} {name!r}: {err}") from err
