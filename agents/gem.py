"""Gradient Episodic Memory (Lopez-Paz & Ranzato 2017) and A-GEM (Chaudhry et al. 2019).

GEM keeps the most recent examples of each task, computes one gradient per past task, and when
the current gradient ``g`` conflicts with any of them (``G g < 0``) replaces it by the closest
gradient that does not (GEM eq. 10-13), solved in the dual with ``quadprog``.
"""

from __future__ import annotations

import warnings

import numpy as np
import quadprog
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from agents.base import Agent


def solve_dual(P: np.ndarray, q: np.ndarray, margin: float, eps: float,
               max_tries: int = 8) -> tuple[np.ndarray | None, float | None]:
    """``argmin_v 1/2 v^T (P + ridge I) v + q^T v`` subject to ``v >= margin``, with quadprog.

    The ridge starts at ``eps`` and, each time quadprog reports the matrix is not positive
    definite, grows tenfold (to at least ``1e-6`` of ``P``'s mean diagonal, so ``eps=0`` also
    recovers); ``(None, None)`` after ``max_tries`` failures.
    """
    k = P.shape[0]
    P = 0.5 * (P + P.T)
    C, b = np.eye(k), np.full(k, float(margin))
    floor = 1e-6 * max(float(np.trace(P)) / k, 1e-12)
    ridge = eps
    for _ in range(max_tries):
        try:
            return quadprog.solve_qp(P + ridge * np.eye(k), -q, C, b)[0], ridge
        except ValueError:
            ridge = max(ridge * 10.0, floor)
    return None, None


def project_gradient(g: torch.Tensor, G: torch.Tensor, margin: float = 0.5, eps: float = 1e-3,
                     max_tries: int = 8) -> tuple[torch.Tensor, dict]:
    """GEM's projection (eq. 11-13): the closest ``g~`` to ``g`` with ``G g~ >= 0``.

    Solves the dual ``min_v 1/2 v^T (G G^T + eps I) v + (G g)^T v`` subject to ``v >= margin``
    and returns ``g~ = G^T v + g``, as GEM's reference code does (``margin`` is its "memory
    strength"). ``G G^T`` and ``G g`` are computed where the tensors live; only the ``k x k``
    problem goes to quadprog. When ``G G^T`` is too ill-conditioned ("matrix G is not positive
    definite"), the ridge is raised tenfold and the solve retried; if every try fails, ``g`` is
    returned unchanged, never an exception.

    Args:
        g: The current gradient, shape ``(p,)``.
        G: One past-task gradient per row, shape ``(k, p)``.
        margin: Lower bound of the dual variables (GEM's memory strength, 0.5).
        eps: Initial ridge added to ``G G^T``.
        max_tries: Solves attempted (eps, 10 eps, ...).

    Returns:
        ``(g~, info)`` with ``info = {"eps": ridge used, or None when no solve succeeded}``.
    """
    P = (G @ G.T).double().cpu().numpy()
    q = (G @ g).double().cpu().numpy()
    if not (np.isfinite(P).all() and np.isfinite(q).all()):
        return g, {"eps": None}
    v, ridge = solve_dual(P, q, margin, eps, max_tries)
    if v is None:
        return g, {"eps": None}
    return torch.as_tensor(v, dtype=G.dtype, device=G.device) @ G + g, {"eps": ridge}


def gem_gradient(g: torch.Tensor, G: torch.Tensor, margin: float = 0.5,
                 eps: float = 1e-3) -> tuple[torch.Tensor, bool, dict]:
    """GEM's step direction (eq. 10-13): ``g`` itself when every past-task constraint
    ``<g, g_k> >= 0`` holds, else :func:`project_gradient`'s projection.

    Returns:
        ``(g~, projected, info)``: ``projected`` says a constraint was violated (so the QP ran);
        ``info["eps"]`` is None when the QP failed at every ridge (``g~`` is then ``g``).
    """
    if not bool((G @ g < 0).any()):
        return g, False, {"eps": eps}
    g_new, info = project_gradient(g, G, margin, eps)
    return g_new, True, info


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A-GEM's projection (Chaudhry et al. 2019, eq. 11): if ``g . g_ref < 0``,
    ``g~ = g - (g . g_ref / g_ref . g_ref) g_ref``, else ``g``; returns ``(g~, projected)``."""
    dot = g @ g_ref
    if not bool(dot < 0):
        return g, False
    return g - dot / (g_ref @ g_ref) * g_ref, True


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class _Projecting(Agent):
    """What GEM and A-GEM share: task labels, the projections counter. Both change the gradient
    before stepping, through :meth:`Agent.gradient` and :meth:`Agent.step_with`."""

    needs_task_labels = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_projections = 0

    def extra_state(self) -> dict:
        return {"n_projections": self.n_projections}

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "projections": int(self.n_projections)}

    def load_extra_state(self, state: dict) -> None:
        self.n_projections = state["n_projections"]


class GEM(_Projecting):
    """GEM with a per-task ring memory (``task_ring``, 256 per task by default).

    Past-task gradients are computed with one ``torch.func.vmap`` over the tasks for models
    without batch norm (1.7x faster than a loop for the MLP on a 2-core CPU) and with a loop
    otherwise (train-mode batch norm cannot run under vmap; the loop also measured faster for
    the reduced ResNet-18).

    Settings:
        margin: Memory strength, the dual's lower bound (0.5).
        eps: Initial ridge of the QP (1e-3), raised adaptively when quadprog fails.
        per_task_grads: ``"auto"``, ``"vmap"`` or ``"loop"``.
    """

    name = "gem"
    SETTINGS = {"margin": 0.5, "eps": 1e-3, "per_task_grads": "auto"}
    SETTING_RULES = {"margin": "non-negative", "eps": "non-negative", "per_task_grads": ("auto", "vmap", "loop")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mode = self.settings["per_task_grads"]
        if mode not in ("auto", "vmap", "loop"):
            raise ValueError(f"per_task_grads must be 'auto', 'vmap' or 'loop', got {mode!r}")
        if mode == "vmap" and _has_batchnorm(self.model):
            raise ValueError("per_task_grads='vmap' cannot run a model with batch norm; use 'loop'")
        self.use_vmap = mode == "vmap" or (mode == "auto" and not _has_batchnorm(self.model))
        self.n_qp_failures = 0
        self._past_cache = None

    # ------------------------------------------------------------- gradients

    def past_gradients(self, tasks: list[int]) -> torch.Tensor:
        """One gradient row per past task, of the loss on that task's memories: ``(k, p)``."""
        if self.use_vmap:
            return self._past_gradients_vmap(tasks)
        rows = []
        for tt in tasks:
            mem = self.memory.sample_task(tt, ctx=self)
            rows.append(self.gradient(self.loss(self.forward(mem.x, tt), mem.y)))
        return torch.stack(rows)

    def _past_memories(self, tasks: list[int]):
        """Padded float memories of past tasks, cached while they are unchanged (GEM writes only
        to the current task's ring, so during a task the past ones are frozen)."""
        if not self.memory.static_items:
            return self.memory.padded(tasks)  # recollections change with the decoder: no cache
        key = (tuple(tasks), tuple(self.memory.task_items(t) for t in tasks))
        if self._past_cache is None or self._past_cache[0] != key:
            self._past_cache = (key, self.memory.padded(tasks))
        return self._past_cache[1]

    def _past_gradients_vmap(self, tasks: list[int]) -> torch.Tensor:
        x, y, w = self._past_memories(tasks)
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}
        masks = self.class_mask[torch.as_tensor(tasks, device=self.device)]
        masked = self.masked

        def task_loss(prm, xb, yb, wb, mb):
            logits = functional_call(self.model, prm, (xb,))
            if masked:
                logits = logits.masked_fill(~mb, float("-inf"))
            ce = F.cross_entropy(logits, yb, reduction="none")
            return (ce * wb).sum() / wb.sum()

        grads = vmap(grad(task_loss), in_dims=(None, 0, 0, 0, 0))(params, x, y, w, masks)
        return torch.cat([grads[n].reshape(len(tasks), -1) for n in names], dim=1)

    # ------------------------------------------------------------- step
    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        if t is None:
            raise ValueError("GEM needs task labels: make the env with task_labels=True")
        self.memory.observe(x.detach(), t, y, ctx=self)
        past = [tt for tt in self.memory.tasks() if tt != t]
        G = self.past_gradients(past) if past else None
        loss = self.loss(logits, y)
        g = self.gradient(loss)
        if G is not None:
            g, projected, qp = gem_gradient(g, G, self.settings["margin"], self.settings["eps"])
            if projected:
                self.n_projections += 1
                if qp["eps"] is None:
                    self.n_qp_failures += 1
                    if self.n_qp_failures == 1:
                        warnings.warn("GEM: the QP failed at every ridge; the step keeps the "
                                      "unprojected gradient (counted in n_qp_failures)", stacklevel=2)
        self.step_with(g)
        return {"loss": loss.detach()}

    def extra_state(self) -> dict:
        return {**super().extra_state(), "n_qp_failures": self.n_qp_failures}

    def counters(self) -> dict[str, int]:
        """``qp_failures``: steps whose QP failed at every ridge and kept the unprojected gradient
        (plain SGD on that step); ``projections``: steps that violated a constraint."""
        return {**super().counters(), "qp_failures": int(self.n_qp_failures)}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.n_qp_failures = state["n_qp_failures"]


class AGEM(_Projecting):
    """A-GEM (Chaudhry et al. 2019, eq. 11): one reference gradient from a random memory batch.

    If ``g . g_ref < 0``, ``g <- g - (g . g_ref / g_ref . g_ref) g_ref``. The reference batch
    (``ref_batch`` = 256 items) is drawn from the memories of past tasks.

    Settings:
        ref_batch: Memory items per reference gradient (256).
    """

    name = "agem"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"ref_batch": 256}
    SETTING_RULES = {"ref_batch": "count"}

    def _reference_batch(self, past: list[int], t: int):
        """``ref_batch`` memories of past tasks: drawn from them directly when the memory keeps
        tasks apart (``task_ring``), else drawn from everything and the current task's dropped."""
        n = self.settings["ref_batch"]
        if hasattr(self.memory, "sample_from"):
            return self.memory.sample_from(past, n, generator=self.generator)
        mem = self.memory.sample(n, ctx=self, generator=self.generator)
        keep = mem.t != t
        if not bool(keep.any()):
            return None
        return type(mem)(mem.x[keep], mem.t[keep], mem.y[keep])

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        if t is None:
            raise ValueError("A-GEM needs task labels: make the env with task_labels=True")
        past = [tt for tt in self.memory.tasks() if tt != t]
        g_ref = None
        mem = self._reference_batch(past, t) if past else None
        if mem is not None:
            g_ref = self.gradient(self.loss(self.forward(mem.x, mem.t if self.masked else None), mem.y))
        loss = self.loss(logits, y)
        g = self.gradient(loss)
        if g_ref is not None:
            g, projected = agem_project(g, g_ref)
            self.n_projections += int(projected)
        self.step_with(g)
        self.memory.observe(x.detach(), t, y, ctx=self)
        return {"loss": loss.detach()}

