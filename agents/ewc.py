"""Elastic Weight Consolidation (Kirkpatrick et al. 2017), with the diagonal Fisher done right."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from agents.base import Agent, RecentWindow


def diagonal_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    mask: torch.Tensor | None = None, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: the mean over examples of the squared per-example gradient.

    ``F_i = 1/N sum_n (d log p(y_n | x_n) / d theta_i)^2``. GEM's EWC squares the gradient of the
    summed loss instead, which is not the Fisher (a known bug); per-example gradients come from
    ``torch.func.vmap``.

    Args:
        model: The network (its parameters are read, not changed).
        x: Inputs ``(N, ...)``.
        y: Labels ``(N,)``.
        mask: Optional ``(N, n_classes)`` boolean mask of allowed logits (masked heads).
        chunk: Examples per vmap call.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    if mask is None:
        mask = torch.ones(len(x), 1, dtype=torch.bool, device=x.device)

    def nll(prm, xi, yi, mi):
        logits = functional_call(model, (prm, buffers), (xi.unsqueeze(0),))
        logits = logits.masked_fill(~mi, float("-inf"))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(nll), in_dims=(None, 0, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    was = model.training
    model.eval()
    for s in range(0, len(x), chunk):
        g = per_example(params, x[s:s + chunk], y[s:s + chunk], mask[s:s + chunk])
        for n in total:
            total[n] += g[n].pow(2).sum(0)
    model.train(was)
    return {n: v / len(x) for n, v in total.items()}


class EWC(Agent):
    """EWC with one quadratic penalty per past task, held as two running sums.

    ``sum_k lambda/2 sum_i F_k,i (theta_i - theta*_k,i)^2`` equals, up to a constant,
    ``lambda/2 sum_i (A_i theta_i^2 - 2 B_i theta_i)`` with ``A = sum_k F_k`` and
    ``B = sum_k F_k theta*_k``, so storage stays two parameter-sized vectors for any number of
    tasks. The Fisher of a task uses its last ``fisher_samples`` examples, kept only until the
    task ends.

    Settings:
        lam: Penalty strength lambda (5; on MNIST-Rotations with SGD at lr 0.1, 100 diverges and
            10 diverged on one seed of three).
        fisher_samples: Examples of the finished task used for its Fisher (200).
    """

    name = "ewc"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"lam": 5.0, "fisher_samples": 200}
    SETTING_RULES = {"lam": "non-negative", "fisher_samples": "count"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.A = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.B = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.has_penalty = False
        self.recent = RecentWindow(self.settings["fisher_samples"])

    def penalty(self) -> torch.Tensor:
        total = 0.0
        for n, p in self.model.named_parameters():
            total = total + (self.A[n] * p * p - 2 * self.B[n] * p).sum()
        return 0.5 * self.settings["lam"] * total

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        if self.has_penalty:
            pen = self.penalty()
            loss = loss + pen
            out["ewc_penalty"] = pen.detach()
        self.sgd_step(loss)
        self.recent.add(x, y)
        return out

    def on_task_end(self, t: int) -> None:
        if not self.recent:
            return
        x, y = self.recent.last()
        mask = self.class_mask[t].expand(len(y), -1) if self.masked else None
        fisher = diagonal_fisher(self.model, x, y, mask)
        for n, p in self.model.named_parameters():
            self.A[n] += fisher[n]
            self.B[n] += fisher[n] * p.detach()
        self.has_penalty = True

    @property
    def overhead_bits(self) -> int:
        return 2 * 32 * sum(v.numel() for v in self.A.values())

    def extra_state(self) -> dict:
        return {"A": self.A, "B": self.B, "has_penalty": self.has_penalty, "recent": self.recent.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.A, self.B = state["A"], state["B"]
        self.has_penalty = state["has_penalty"]
        rec = state["recent"]
        if isinstance(rec, list):  # a checkpoint written before RecentWindow: (x, y, t) batches
            rec = {"batches": [(b[0], b[1]) for b in rec], "n": state["recent_n"]}
        self.recent.load_state_dict(rec)
