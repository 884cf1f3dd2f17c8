"""Per-module freezing and AdamW parameter groups, one learning rate per module (paper section 4.1).

The modules are the model's top-level submodules ``vision_tower``, ``temporal`` (TFF), ``merger``,
``language_model`` and, when the model has one, ``bridge``; each is trained with its own learning rate or frozen. An
entry may also name a part below one (a dotted path, ``bridge.say``, or a parameter, ``bridge.sharpness``): the most
specific entry that covers a parameter decides, so ``freeze: [bridge]`` with ``lr: {bridge.say: 3e-4}`` trains that
layer alone.
Biases and norm weights (1-D tensors) get no weight decay, the usual AdamW practice; each entry therefore gives up to
two groups, both named after it.

A BatchNorm whose parameters are all frozen runs in eval mode (``train_mode``): it uses and keeps the running
statistics it was trained with rather than the statistics of whatever batch passes through it (the word bridge's
BatchNorm standardises over a batch's videos: 32 when it was trained, 8 in a step through the LLM).
"""

from __future__ import annotations

import torch
from torch import nn

from tempflex.train.recipe import MODULES, OPTIONAL_MODULES, OptimSpec, RecipeError


def owner(name: str, entries: list[str]) -> str | None:
    """The most specific entry that covers parameter ``name`` (the entry itself or a dotted prefix of it)."""
    covering = [e for e in entries if name == e or name.startswith(e + ".")]
    return max(covering, key=len, default=None)


def _check_paths(model: nn.Module, optim: OptimSpec) -> None:
    names = [n for n, _ in model.named_parameters()]
    for entry in [*optim.lr, *optim.freeze]:
        if any(n == entry or n.startswith(entry + ".") for n in names):
            continue
        where = f"optim.lr.{entry}" if entry in optim.lr else "optim.freeze"
        if "." not in entry:  # a top-level module the model lacks; a frozen one is fine
            if entry in optim.lr:
                raise RecipeError(f"{where}: the model has no {entry} module (tff_enabled is false?)")
            continue
        raise RecipeError(f"{where}: the model has no parameters under {entry!r}")


def apply_freeze(model: nn.Module, optim: OptimSpec) -> dict[str, int]:
    """Set requires_grad per parameter from its most specific entry; returns trainable parameter counts per entry
    of ``optim.lr``."""
    _check_paths(model, optim)
    entries = [*optim.lr, *optim.freeze]
    stray = [n for n, _ in model.named_parameters() if n.split(".")[0] not in MODULES + OPTIONAL_MODULES]
    if stray:
        raise RecipeError(f"optim: parameters outside the known modules: {stray[:3]}")
    for module in OPTIONAL_MODULES:
        present = any(n.startswith(module + ".") for n, _ in model.named_parameters())
        if present and module not in entries:
            raise RecipeError(f"optim.lr.{module}: the model has a {module}: give it a learning rate or list it in "
                              "optim.freeze")
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        entry = owner(name, entries)
        p.requires_grad_(entry in optim.lr)
        if entry in optim.lr:
            counts[entry] = counts.get(entry, 0) + p.numel()
    return counts


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except that BatchNorm layers with no trainable parameter stay in eval mode."""
    model.train()
    for module in model.modules():
        norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        if norm and not any(p.requires_grad for p in module.parameters()):
            module.eval()
    return model


def param_groups(model: nn.Module, optim: OptimSpec) -> list[dict]:
    """AdamW groups ``{"params", "lr", "weight_decay", "name"}`` for the trained entries, in the order of the
    model's parameters."""
    entries = [*optim.lr, *optim.freeze]
    by_entry: dict[str, list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        entry = owner(name, entries)
        if p.requires_grad and entry in optim.lr:
            by_entry.setdefault(entry, []).append(p)
    groups = []
    for entry, params in by_entry.items():
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        for subset, wd in ((decay, optim.weight_decay), (no_decay, 0.0)):
            if subset:
                groups.append({"params": subset, "lr": optim.lr[entry], "weight_decay": wd, "name": entry})
    if not groups:
        raise RecipeError("optim.lr: no module is trained")
    return groups


def build_optimizer(model: nn.Module, optim: OptimSpec) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, optim), betas=optim.betas, eps=optim.eps)


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Current learning rate per entry (its groups share one)."""
    return {g.get("name", str(i)): float(g["lr"]) for i, g in enumerate(optimizer.param_groups)}
