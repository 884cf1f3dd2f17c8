"""The word bridge (not in the TempFlex paper): an optional module after the merger that writes one soft word of
the LLM's own vocabulary into every visual token of an item, so that a small encoder trained from scratch can talk
to a frozen small LLM (tempflex-tiny). ``TempFlexConfig.bridge`` switches it on; the paper's model has none."""

from tempflex.bridge.config import WordBridgeConfig, bridge_from_legacy
from tempflex.bridge.word import WordBridge

__all__ = ["WordBridge", "WordBridgeConfig", "bridge_from_legacy"]
