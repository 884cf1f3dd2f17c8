"""`WordBridgeConfig`: the optional word bridge's settings, the ``bridge`` section of a ``TempFlexConfig``.

Not in the TempFlex paper. ``TempFlexConfig.bridge`` holds these fields as a plain mapping (so that config.json
stays JSON) and ``TempFlexConfig.bridge_config`` gives them back validated; ``None`` means no bridge, the paper's
model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

# the flat fields older configs used for the same settings: merger_word_readout switched the bridge on
LEGACY_FIELDS = {
    "merger_readout_query": "query",
    "merger_readout_query_norm": "query_norm",
    "merger_readout_slots": "slots",
    "merger_readout_span": "span",
}


@dataclass(frozen=True)
class WordBridgeConfig:
    hidden: int = 256  # width of the video summary the word is said from
    top: int = 64  # the soft word mixes the input embeddings of this many likeliest words
    query: bool = False  # the prompt's text (outside the media) steers the word (FiLM on the summary)
    query_norm: Literal["layer", "batch"] = "layer"  # the query normalised per prompt, or per feature over the batch
    slots: int = 0  # keep up to this many tokens of each frame apart (0: attention pooling over the frame)
    slot_width: int = 64  # features per kept token with slots
    span: int = 0  # read the video resampled to this many time steps at once (0: a GRU over its frames)

    def __post_init__(self) -> None:
        if not isinstance(self.query, bool):
            raise TypeError(f"bridge.query must be true or false, got {self.query!r}")
        if self.query_norm not in ("layer", "batch"):
            raise ValueError(f"bridge.query_norm must be layer or batch, got {self.query_norm!r}")
        for name in ("hidden", "top", "slots", "slot_width", "span"):
            value = getattr(self, name)
            low = 1 if name in ("hidden", "top", "slot_width") else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"bridge.{name} must be a whole number >= {low}, got {value!r}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> WordBridgeConfig:
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"bridge: unknown fields {sorted(unknown)} (known: {[f.name for f in fields(cls)]})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bridge_from_legacy(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Pop the flat ``merger_word_readout`` / ``merger_readout_*`` fields of an older config from ``kwargs`` and
    return the equivalent ``bridge`` mapping (None when the older config had no readout)."""
    enabled = kwargs.pop("merger_word_readout", False)
    values = {new: kwargs.pop(old) for old, new in LEGACY_FIELDS.items() if old in kwargs}
    if not enabled:
        if any(values.get(k) for k in ("query", "slots", "span")):
            raise ValueError("merger_readout_* fields need merger_word_readout: true")
        return None
    return WordBridgeConfig.from_mapping(values).to_dict()
