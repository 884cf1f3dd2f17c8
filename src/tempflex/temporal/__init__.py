"""Temporal modelling over (B, F, P, D) patch fibres: Temporal Fiber Fusion (paper section 3.2)."""

from tempflex.temporal.scan import linear_scan
from tempflex.temporal.tff import TemporalFiberFusion, TemporalFiberFusionLayer

__all__ = ["TemporalFiberFusion", "TemporalFiberFusionLayer", "linear_scan"]
