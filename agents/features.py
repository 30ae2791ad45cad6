"""The learner's side of feature replay (latent replay, REMIND): activations at a cut point of
the model, and the lower part frozen or slowed.

A feature memory never imports agents; it calls the learner's documented methods
(:meth:`agents.base.Agent.features`, :meth:`agents.base.Agent.slow_lower`), which use these
functions over the model's split (:func:`agents.models.split_model`).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def lower_features(lower: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lower(x)`` without gradient, the lower part in eval mode (batch-norm statistics are read,
    never updated: writing to a memory must not change the model), its mode restored after."""
    was = lower.training
    lower.eval()
    try:
        return lower(x)
    finally:
        lower.train(was)


def slow_below(lower: nn.Module, optimizer: torch.optim.Optimizer | None, factor: float) -> bool:
    """Freeze ``lower`` (``factor == 0``) or train it at ``factor`` times the learning rate.

    Latent replay (Pellegrini et al. 2020, abstract and method section): "slow-down learning at all the layers below the
    latent replay one, leaving the layers above free to learn at full pace"; frozen is the limit.
    Frozen parameters stop requiring gradients (the optimiser then skips them); slowed ones move
    to a parameter group of their own whose ``lr`` is ``factor`` times their group's.

    Returns:
        True when frozen (the learner then runs its lower part without gradient, in eval mode).
    """
    if factor < 0:
        raise ValueError(f"lower_lr must be >= 0 (0 freezes the layers below the cut), got {factor}")
    params = list(lower.parameters())
    ids = {id(p) for p in params}
    if factor == 0:
        for p in params:
            p.requires_grad_(False)
        return True
    if optimizer is not None:
        lr = optimizer.param_groups[0]["lr"]
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        optimizer.add_param_group({"params": params, "lr": lr * factor})
    return False
