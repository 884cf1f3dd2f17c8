"""Per-module freezing and AdamW parameter groups, one learning rate per top-level module (paper section 4.1).

The modules are the model's top-level submodules ``vision_tower``, ``temporal`` (TFF), ``merger`` and
``language_model``. Each is trained with its own learning rate or frozen. Biases and norm weights (1-D tensors)
get no weight decay, the usual AdamW practice; each module therefore gives up to two groups, both named after it.
"""

from __future__ import annotations

import torch
from torch import nn

from tempflex.train.recipe import MODULES, OptimSpec, RecipeError


def module_of(model: nn.Module, name: str) -> nn.Module | None:
    """The top-level submodule ``name``, or None when the model has none (e.g. ``temporal`` with TFF off)."""
    return getattr(model, name, None)


def apply_freeze(model: nn.Module, optim: OptimSpec) -> dict[str, int]:
    """Set requires_grad per module; returns trainable parameter counts per trained module."""
    for name in optim.lr:
        if module_of(model, name) is None:
            raise RecipeError(f"optim.lr.{name}: the model has no {name} module (tff_enabled is false?)")
    counts = {}
    for name in MODULES:
        module = module_of(model, name)
        if module is None:
            continue
        trained = name in optim.lr
        module.requires_grad_(trained)
        if trained:
            counts[name] = sum(p.numel() for p in module.parameters())
    stray = [n for n, p in model.named_parameters() if n.split(".")[0] not in MODULES and p.requires_grad]
    if stray:
        raise RecipeError(f"optim: parameters outside the known modules: {stray[:3]}")
    return counts


def param_groups(model: nn.Module, optim: OptimSpec) -> list[dict]:
    """AdamW groups ``{"params", "lr", "weight_decay", "name"}`` for the trained modules, in MODULES order."""
    groups = []
    for name in MODULES:
        module = module_of(model, name)
        if module is None or name not in optim.lr:
            continue
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        lr = optim.lr[name]
        for subset, wd in ((decay, optim.weight_decay), (no_decay, 0.0)):
            if subset:
                groups.append({"params": subset, "lr": lr, "weight_decay": wd, "name": name})
    if not groups:
        raise RecipeError("optim.lr: no module is trained")
    return groups


def build_optimizer(model: nn.Module, optim: OptimSpec) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, optim), betas=optim.betas, eps=optim.eps)


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Current learning rate per module (its groups share one)."""
    return {g.get("name", str(i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
