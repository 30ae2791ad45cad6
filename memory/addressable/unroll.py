"""Back-propagation through time through SGD with momentum (*Remember the Past*, Algorithm 1's
inner loop).

The unroll is differentiated by a hand-written reverse pass through SGD with momentum (as the
reference code does): the forward pass keeps only the parameters ``theta_t`` of every step (no
graph), and the reverse pass recomputes one step's gradient at a time with a graph, so memory
grows with ``T * |theta|``, not with ``T`` graphs of activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F


@dataclass
class Unroll:
    """Inner-loop settings: ``steps`` of SGD, learning rate ``lr``, momentum ``momentum``, minibatch
    ``batch_per_class`` synthetic images of every class per step (all when the slots are fewer)."""

    steps: int = 150
    lr: float = 0.01
    momentum: float = 0.9
    batch_per_class: int = 32


def _loss(model: nn.Module, params: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def minibatches(rows: int, n_classes: int, unroll: Unroll, generator: torch.Generator) -> list[torch.Tensor]:
    """Per inner step, the indices into ``recall_classes()`` (class-major) of the synthetic minibatch."""
    if rows <= unroll.batch_per_class:
        return [torch.arange(rows * n_classes)] * unroll.steps
    out = []
    for _ in range(unroll.steps):
        pick = torch.stack([torch.randperm(rows, generator=generator)[: unroll.batch_per_class]
                            for _ in range(n_classes)])
        out.append((pick + rows * torch.arange(n_classes)[:, None]).flatten())
    return out


def unroll_forward(model: nn.Module, params0: dict, x_syn: torch.Tensor, y_syn: torch.Tensor,
                   unroll: Unroll, batches: list[torch.Tensor]) -> tuple[dict, list[dict]]:
    """Train ``params0`` on the synthetic data without a graph; returns ``theta_T`` and ``[theta_0..theta_{T-1}]``."""
    theta = {k: v.detach() for k, v in params0.items()}
    mom = {k: torch.zeros_like(v) for k, v in theta.items()}
    x_syn = x_syn.detach()
    trajectory = []
    for b in batches:
        trajectory.append(theta)
        with torch.enable_grad():
            th = {k: v.requires_grad_(True) for k, v in theta.items()}
            g = torch.autograd.grad(_loss(model, th, x_syn[b], y_syn[b]), list(th.values()))
        mom = {k: unroll.momentum * mom[k] + gk for k, gk in zip(theta, g, strict=True)}
        theta = {k: (theta[k] - unroll.lr * mom[k]).detach() for k in theta}
    return theta, trajectory


def unroll_backward(model: nn.Module, trajectory: list[dict], d_theta: dict, x_syn: torch.Tensor,
                    y_syn: torch.Tensor, unroll: Unroll, batches: list[torch.Tensor]) -> torch.Tensor:
    """The reverse pass: ``dL/dx_syn`` from ``dL/dtheta_T`` through ``theta_t = theta_{t-1} - lr m_t``,
    ``m_t = beta m_{t-1} + g(theta_{t-1}, x_b)``, one recomputed step at a time (Hessian-vector products)."""
    d_theta = dict(d_theta)
    d_m = {k: torch.zeros_like(v) for k, v in d_theta.items()}
    d_x = torch.zeros_like(x_syn)
    x_leaf = x_syn.detach().requires_grad_(True)
    for theta, b in zip(reversed(trajectory), reversed(batches), strict=True):
        d_m_total = {k: d_m[k] - unroll.lr * d_theta[k] for k in d_theta}
        with torch.enable_grad():
            th = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            g = torch.autograd.grad(_loss(model, th, x_leaf[b], y_syn[b]), list(th.values()), create_graph=True)
            out = torch.autograd.grad(g, [*th.values(), x_leaf], grad_outputs=[d_m_total[k] for k in th],
                                      allow_unused=True)
        for k, gk in zip(th, out[:-1], strict=True):
            if gk is not None:
                d_theta[k] = d_theta[k] + gk
        if out[-1] is not None:
            d_x += out[-1]
        d_m = {k: unroll.momentum * d_m_total[k] for k in d_m_total}
    return d_x


def bptt_gradient(model: nn.Module, params0: dict, x_syn: torch.Tensor, y_syn: torch.Tensor,
                  x_real: torch.Tensor, y_real: torch.Tensor, unroll: Unroll,
                  batches: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``dJ/dx_syn`` of the real-data loss ``J = l(f_{theta_T}(x_real), y_real)`` after the unroll, and ``J``."""
    theta_T, trajectory = unroll_forward(model, params0, x_syn, y_syn, unroll, batches)
    with torch.enable_grad():
        th = {k: v.requires_grad_(True) for k, v in theta_T.items()}
        loss = _loss(model, th, x_real, y_real)
        d_theta = dict(zip(th, torch.autograd.grad(loss, list(th.values())), strict=True))
    return unroll_backward(model, trajectory, d_theta, x_syn, y_syn, unroll, batches), float(loss.detach())
