"""``BudgetSpec``: a pipeline as typed data, from a CLI-style string or a dict (e.g. a model config's default).

A spec string is comma-separated items; the first may be ``reducer[:budget]``, the rest are ``key=value``::

    flux:1024
    flux:1024,groups=2
    drop:512,mode=ratio,ratio=0.3,select=dynamic,frames=32,select.groups=4
    ata:2048,segment_frames=8,timestamps=frame,allocator.weighting=softmax

A bare key that names a spec field sets it (``budget``, ``reducer``/``reduce``, ``selector``/``select``,
``frames``, ``timestamps``, ``allocator``, ``count_separators``); any other bare key is a reducer option;
``kind.key=value`` is an option of that plug-in (``reducer.``, ``selector.``/``select.``, ``timestamps.``,
``allocator.``). Values read as int, float, true/false, none, or else text. ``for_reducer("flux", 1024)``
maps ``--budget 1024 --reduce flux`` onto the same fields. Every mistake is one ``BudgetError`` naming the
offending key.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tempflex.budget.base import BudgetError, available, build

ALIASES = {"reduce": "reducer", "select": "selector"}
OPTION_FIELDS = {"reducer": "reducer_options", "selector": "selector_options", "timestamps": "timestamps_options",
                 "allocator": "allocator_options"}


class BudgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budget: int  # most tokens the video may cost the LLM: visual + time tags (+ separators if counted)
    reducer: str = "flux"  # registered TokenReducer
    reducer_options: dict[str, Any] = Field(default_factory=dict)
    selector: str | None = None  # registered FrameSelector; None: every frame (uniform when frames is set)
    frames: int | None = None  # frames the selector keeps
    selector_options: dict[str, Any] = Field(default_factory=dict)
    timestamps: str | None = None  # registered TimestampEncoder; None: frame tags iff the processor writes them
    timestamps_options: dict[str, Any] = Field(default_factory=dict)
    allocator: str | None = None  # registered BudgetAllocator, injected into reducers that take one (ata)
    allocator_options: dict[str, Any] = Field(default_factory=dict)
    count_separators: bool = False  # charge the frame separators to the budget too

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"budget must be a positive number of tokens, got {value}")
        return value

    @field_validator("frames")
    @classmethod
    def _frames(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"frames must be a positive number of frames, got {value}")
        return value

    @field_validator("reducer", "selector", "timestamps", "allocator")
    @classmethod
    def _registered(cls, value: str | None, info) -> str | None:
        if value is not None and value not in available(info.field_name):
            raise ValueError(f"unknown {info.field_name} {value!r}; available: {', '.join(available(info.field_name))}")
        return value

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            message = first["msg"].removeprefix("Value error, ")
            named = re.search(rf"\b{re.escape(where)}\b", message)  # the message names its field: say it once
            said = message if named else f"{where}: {message}"
            raise BudgetError(f"budget spec: {said}") from None

    @classmethod
    def parse(cls, text: str) -> BudgetSpec:
        """A spec string (see the module docstring)."""
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise BudgetError("budget spec is empty; write e.g. 'flux:1024'")
        data: dict[str, Any] = {}
        if "=" not in items[0]:
            name, _, budget = items.pop(0).partition(":")
            data["reducer"] = name.strip()
            if budget:
                data["budget"] = _value(budget)
        for item in items:
            key, eq, raw = item.partition("=")
            if not eq or not key.strip():
                raise BudgetError(f"budget spec item {item!r} is not key=value")
            _put(data, key.strip(), raw.strip())
        if "budget" not in data:
            raise BudgetError(f"budget spec {text!r} has no budget; write e.g. '{data.get('reducer', 'flux')}:1024'")
        return cls.from_dict(data)

    @classmethod
    def for_reducer(cls, reducer: str, budget: int) -> BudgetSpec:
        """``budget`` tokens spent by ``reducer``, a name with options after commas, as ``--budget N --reduce R``
        give them: ``for_reducer("drop,threshold=0.8", 512)`` is ``parse("drop:512,threshold=0.8")``."""
        name, _, options = reducer.partition(",")
        return cls.parse(f"{name}:{budget}" + (f",{options}" if options else ""))

    def components(self) -> dict[str, Any]:
        """The built plug-ins and settings, as ``BudgetPipeline``'s fields (``BudgetPipeline.from_spec``)."""
        options = dict(self.reducer_options)
        if self.allocator is not None or self.allocator_options:
            options["allocator"] = build("allocator", self.allocator or "waterfill", **self.allocator_options)
        selector = build("selector", self.selector, **self.selector_options) if self.selector else None
        if selector is None and self.selector_options:
            raise BudgetError("selector options given without a selector")
        timestamps = build("timestamps", self.timestamps, **self.timestamps_options) if self.timestamps else None
        return {"reducer": build("reducer", self.reducer, **options), "budget": self.budget, "selector": selector,
                "frames": self.frames, "timestamps": timestamps, "count_separators": self.count_separators}


def _value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _put(data: dict[str, Any], key: str, raw: str) -> None:
    value = _value(raw)
    kind, dot, option = key.partition(".")
    kind = ALIASES.get(kind, kind)
    if dot:
        if kind not in OPTION_FIELDS or not option:
            raise BudgetError(f"budget spec key {key!r}: the prefix must be one of {', '.join(OPTION_FIELDS)}")
        data.setdefault(OPTION_FIELDS[kind], {})[option] = value
    elif kind in OPTION_FIELDS:  # a plug-in name: kept as written ("none" is the timestamps plug-in)
        data[kind] = raw
    elif kind in BudgetSpec.model_fields and kind not in OPTION_FIELDS.values():
        data[kind] = value
    else:
        data.setdefault("reducer_options", {})[key] = value
