"""Training: YAML recipes, one accelerate/DeepSpeed engine with pluggable objectives (``lm``, ``options``),
checkpoints, logs and FluxViT co-training.

Kept light on purpose: import the submodules you need (``tempflex.train.recipe``, ``tempflex.train.engine``, ...);
nothing heavy is imported here.
"""
