"""The optimiser every learner steps by default: plain SGD without the start-up cost of torch's."""

from __future__ import annotations

import torch

_Optimizer = torch.optim.Optimizer


class PlainSGD(_Optimizer):
    """``theta <- theta - lr * grad``: ``torch.optim.SGD`` without momentum or weight decay, as
    GEM and the papers' baselines step.

    A real :class:`torch.optim.Optimizer` (parameter groups, ``state_dict``, hooks, every
    ``torch.optim.lr_scheduler`` scheduler) whose step is one fused ``_foreach_add_`` per group.
    It differs from ``torch.optim.SGD(lr=lr)`` in one way: ``add_param_group``, ``zero_grad``,
    ``state_dict`` and ``load_state_dict`` are the base class's functions without their
    ``torch._disable_dynamo`` wrappers, whose first call imports ``torch._dynamo``, 1.9 s of
    start-up in every process on this 2-core CPU (docs/agents.md, "Optimisers"); they only matter
    under ``torch.compile``. Agents that want momentum or Adam return any other ``torch.optim``
    optimiser from :meth:`Agent.make_optimizer`.

    Args:
        params: Parameters or parameter groups (``{"params": ..., "lr": ...}``).
        lr: Learning rate (> 0).
    """

    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": float(lr)})

    add_param_group = _Optimizer.add_param_group.__wrapped__
    zero_grad = _Optimizer.zero_grad.__wrapped__
    state_dict = _Optimizer.state_dict.__wrapped__
    _load_state_dict = _Optimizer.load_state_dict.__wrapped__

    def load_state_dict(self, state_dict: dict) -> None:
        if "param_groups" not in state_dict:  # a checkpoint of cl-env <= 0.5: {"lr": ...}
            for group in self.param_groups:
                group["lr"] = float(state_dict["lr"])
            return
        self._load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure=None):
        """One SGD step; ``closure`` (re-evaluating the loss) as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            with_grad = [p for p in group["params"] if p.grad is not None]
            if with_grad:
                torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-group["lr"])
        return loss
