"""Token budgets for video: select frames, reduce visual tokens, allocate by relevance, tag time (docs/budget.md).

``BudgetPipeline.from_spec("flux:1024").prepare(model, processor, clip, prompt)`` gives LLM inputs whose visual
tokens plus time-tag tokens are at most 1024. Plug-ins implement a Protocol of ``tempflex.budget.base`` and
register under a name; ``build(kind, name, **options)`` makes one.
"""

from tempflex.budget.base import (
    REGISTRY,
    BudgetAllocator,
    BudgetError,
    FrameSelector,
    QueryAwareReducer,
    TimestampEncoder,
    TokenReducer,
    VisualTokens,
    available,
    build,
    register,
)
from tempflex.budget.pipeline import BudgetPipeline, encode_clip
from tempflex.budget.relevance import segment_relevance
from tempflex.budget.spec import BudgetSpec

__all__ = [
    "REGISTRY",
    "BudgetAllocator",
    "BudgetError",
    "BudgetPipeline",
    "BudgetSpec",
    "FrameSelector",
    "QueryAwareReducer",
    "TimestampEncoder",
    "TokenReducer",
    "VisualTokens",
    "available",
    "build",
    "encode_clip",
    "register",
    "segment_relevance",
]
