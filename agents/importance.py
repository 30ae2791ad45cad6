"""Importance-weighted quadratic regularisers with one anchor: Synaptic Intelligence (Zenke et
al. 2017) and Memory Aware Synapses (Aljundi et al. 2018)."""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from agents.base import Agent, RecentWindow


class AnchoredPenalty(Agent):
    """``L(theta) + lam * sum_i Omega_i (theta_i - theta*_i)^2``: one anchor ``theta*`` (the
    parameters at the last task end) and importances ``Omega`` summed over the finished tasks.
    Subclasses say how a task's importance is measured (:meth:`task_importance`).

    Storage overhead: ``Omega`` and ``theta*``, two float32 parameter-sized vectors.

    Settings:
        lam: Penalty strength.
    """

    SETTINGS = {"lam": 0.1}
    SETTING_RULES = {"lam": "non-negative"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.omega = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.anchor = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.has_penalty = False

    def penalty(self) -> torch.Tensor:
        total = 0.0
        for n, p in self.model.named_parameters():
            total = total + (self.omega[n] * (p - self.anchor[n]).pow(2)).sum()
        return self.settings["lam"] * total

    def task_importance(self, t: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_task_end(self, t: int) -> None:
        new = self.task_importance(t)
        for n, p in self.model.named_parameters():
            self.omega[n] += new[n]
            self.anchor[n] = p.detach().clone()
        self.has_penalty = True

    @property
    def overhead_bits(self) -> int:
        return 2 * 32 * sum(v.numel() for v in self.omega.values())

    def extra_state(self) -> dict:
        return {"omega": self.omega, "anchor": self.anchor, "has_penalty": self.has_penalty}

    def load_extra_state(self, state: dict) -> None:
        self.omega, self.anchor, self.has_penalty = state["omega"], state["anchor"], state["has_penalty"]


def path_integral_step(omega_running: dict[str, torch.Tensor], task_grad: dict[str, torch.Tensor],
                       delta: dict[str, torch.Tensor]) -> None:
    """SI's online importance (Zenke et al. 2017, eq. 3): ``w_i += -g_i * delta_theta_i``, the
    gradient of the task loss (without the penalty) times the update actually taken."""
    for n in omega_running:
        omega_running[n] -= task_grad[n] * delta[n]


def si_importance(omega_running: dict[str, torch.Tensor], start: dict[str, torch.Tensor],
                  end: dict[str, torch.Tensor], xi: float) -> dict[str, torch.Tensor]:
    """SI's per-task importance (eq. 5): ``w_i / ((theta_i(end) - theta_i(start))^2 + xi)``,
    clamped at zero (a negative path integral carries no importance)."""
    return {n: (omega_running[n] / ((end[n] - start[n]).pow(2) + xi)).clamp_(min=0) for n in omega_running}


class SI(AnchoredPenalty):
    """Synaptic Intelligence (Zenke et al. 2017, "Continual Learning Through Synaptic Intelligence").

    Along each task's training path the running importance ``w`` accumulates
    :func:`path_integral_step`; the task's gradient is that of the task loss alone, taken before
    the penalty's gradient ``2 lam Omega (theta - theta*)`` is added analytically (one backward
    per step). At the task end :func:`si_importance` turns ``w`` into ``Omega``'s increment and the
    anchor moves to the current parameters (eq. 4: ``L + c sum_i Omega_i (theta*_i - theta_i)^2``).

    Settings:
        lam: ``c``, the penalty strength (0.1: on MNIST-Rotations with SGD at lr 0.1 and batches of
            10, c = 0.3, 1 and 10 diverge; 0.1 retains 42.6 %, 0.03 41.6 %, seed 0. Avalanche's
            split-MNIST reproduction, with Adam at lr 0.001, uses 1).
        xi: The damping ``xi`` (0.1, that reproduction's value).
    """

    name = "si"
    SETTINGS = {"lam": 0.1, "xi": 0.1}
    SETTING_RULES = {"xi": "positive"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.running = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.start = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        named = [(n, p) for n, p in self.model.named_parameters() if p.grad is not None]
        task_grad = {n: p.grad.detach().clone() for n, p in named}
        before = {n: p.detach().clone() for n, p in named}
        if self.has_penalty:
            with torch.no_grad():
                for n, p in named:
                    p.grad.add_(self.omega[n] * (p - self.anchor[n]), alpha=2 * self.settings["lam"])
                out["si_penalty"] = self.penalty().detach()
        self.optimizer.step()
        with torch.no_grad():
            path_integral_step({n: self.running[n] for n, _ in named}, task_grad,
                               {n: p.detach() - before[n] for n, p in named})
        return out

    def task_importance(self, t: int) -> dict[str, torch.Tensor]:
        end = {n: p.detach() for n, p in self.model.named_parameters()}
        new = si_importance(self.running, self.start, end, self.settings["xi"])
        self.running = {n: torch.zeros_like(v) for n, v in self.running.items()}
        self.start = {n: v.clone() for n, v in end.items()}
        return new

    @property
    def overhead_bits(self) -> int:  # Omega, theta*, and during a task w and theta(start)
        return 4 * 32 * sum(v.numel() for v in self.omega.values())

    def extra_state(self) -> dict:
        return {**super().extra_state(), "running": self.running, "start": self.start}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.running, self.start = state["running"], state["start"]


def mas_importance(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                   chunk: int = 256) -> dict[str, torch.Tensor]:
    """MAS's importance (Aljundi et al. 2018, eq. 2-4): ``Omega_i = 1/N sum_k |g_i(x_k)|`` with
    ``g(x) = d ||F(x; theta)||_2^2 / d theta``, the squared L2 norm of the network's output (its
    logits; with a masked head, the task's logits) per example, so per-example gradients
    (``torch.func.vmap``), not the gradient of a batch sum.

    Args:
        model: The network (read, not changed).
        x: Inputs ``(N, ...)``; no labels are needed.
        mask: Optional ``(n_classes,)`` boolean mask of the logits that count.
        chunk: Examples per vmap call.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def sq_norm(prm, xi):
        out = functional_call(model, (prm, buffers), (xi.unsqueeze(0),))
        if mask is not None:
            out = out[:, mask]
        return out.pow(2).sum()

    per_example = vmap(grad(sq_norm), in_dims=(None, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was = model.training
    model.eval()
    for s in range(0, len(x), chunk):
        g = per_example(params, x[s:s + chunk])
        for n in total:
            total[n] += g[n].abs().sum(0)
    model.train(was)
    return {n: v / len(x) for n, v in total.items()}


class MAS(AnchoredPenalty):
    """Memory Aware Synapses (Aljundi et al. 2018, "Memory Aware Synapses: Learning what (not)
    to forget"): the importance of a finished task is :func:`mas_importance` on its last
    ``importance_samples`` examples (kept only until the task ends, like EWC's Fisher window);
    importances of successive tasks are summed, as the paper accumulates them (Avalanche
    averages them with a decay instead).

    Settings:
        lam: ``lambda`` (0.01: on MNIST-Rotations with SGD at lr 0.1, 0.1 and 1 diverge; 0.01 retains
            45.4 %, 0.03 49.8 %, 0.003 43.9 %, seed 0).
        importance_samples: Examples of the finished task used for its importance (200).
    """

    name = "mas"
    SETTINGS = {"lam": 0.01, "importance_samples": 200}
    SETTING_RULES = {"importance_samples": "count"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recent = RecentWindow(self.settings["importance_samples"])

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        if self.has_penalty:
            pen = self.penalty()
            loss = loss + pen
            out["mas_penalty"] = pen.detach()
        self.sgd_step(loss)
        self.recent.add(x)
        return out

    def task_importance(self, t: int) -> dict[str, torch.Tensor]:
        if not self.recent:
            return {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        (x,) = self.recent.last()
        return mas_importance(self.model, x, self.class_mask[t] if self.masked else None)

    def extra_state(self) -> dict:
        return {**super().extra_state(), "recent": self.recent.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.recent.load_state_dict(state["recent"])
