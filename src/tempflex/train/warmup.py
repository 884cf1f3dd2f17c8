"""Stage 0's former module, kept so that existing imports work: the options objective now lives in
``tempflex.train.objectives`` (``options``, ``option_head``, ``option_data``, ``option_terms``) and runs on the one
training engine (``tempflex.train.engine.Trainer``), which picks the objective from the recipe. New code imports
from there.
"""

from __future__ import annotations

from tempflex.train.engine import Trainer as OptionTrainer
from tempflex.train.objectives.option_data import (
    OptionBatchSource,
    load_option_records,
    option_records,
)
from tempflex.train.objectives.option_head import OptionHead, option_accuracy, visual_tokens
from tempflex.train.objectives.option_terms import embedding_spread, said_distance, variance_hinge

__all__ = ["OptionBatchSource", "OptionHead", "OptionTrainer", "embedding_spread", "load_option_records",
           "option_accuracy", "option_records", "said_distance", "variance_hinge", "visual_tokens"]
