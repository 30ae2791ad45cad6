"""A diverged run is not a result: non-finite parameters, and arithmetic overflow in a training
step, detected here (the loss check is the loop's, every step)."""

from __future__ import annotations

import torch

from agents.base import Agent


def parameters(learner: Agent) -> list[torch.Tensor]:
    params = list(learner.model.parameters()) if isinstance(learner.model, torch.nn.Module) else []
    inner = getattr(learner.memory, "model", None)
    if isinstance(inner, torch.nn.Module):
        params += list(inner.parameters())
    return params


def nonfinite_parameters(learner: Agent) -> bool:
    params = parameters(learner)
    if not params:
        return False
    return not bool(torch.stack([torch.isfinite(p.detach()).all() for p in params]).all())


def is_overflow(exc: BaseException) -> bool:
    """Whether ``exc`` is arithmetic overflow (Python's OverflowError, or torch's "cannot be
    converted to type float without overflow")."""
    return isinstance(exc, OverflowError) or "overflow" in str(exc).lower()
