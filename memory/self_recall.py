"""Self-recall (Automatic Recall Machines, Ji et al.): replay inputs recalled from the model itself.

No example is stored. A copy of the model, refreshed every lag ``T`` steps, is the only memory;
each step a replay batch is *recalled* by starting from the current real batch and taking ``S``
plain gradient steps on the inputs so that they maximise the divergence between the old and the
current model away from the classes being trained (ARM eq. 7-9), and the old model's outputs on
them are the replay targets (eq. 6). The terms below are written as the reference code minimises
them: each is the negative of (or equal to) the term the paper maximises.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from memory.base import Memory, MemorySpec, ReplayBatch

# --------------------------------------------------------------------------- recall terms (pure)


def neg_js_divergence(old_logits: torch.Tensor, new_logits: torch.Tensor) -> torch.Tensor:
    """``1 - 1/2 [KL(m || p_old) + KL(m || p_new)]`` with ``m = (p_old + p_new) / 2``, batch mean.

    The reference code's form of the symmetric (Jensen-Shannon-type) divergence ``D`` of eq. 8,
    negated around 1 so that minimising it maximises the divergence. Computed in log space
    (``log m = logaddexp(log p_old, log p_new) - log 2``): the same value, but a class whose
    probability underflows to 0 in both models gives a zero gradient instead of NaN (``0 * log 0``
    through ``F.kl_div``'s target, which killed a run on MNIST-5k-5 at its first recall).
    """
    lo, ln = old_logits.log_softmax(1), new_logits.log_softmax(1)
    lm = torch.logaddexp(lo, ln) - math.log(2.0)
    m = lm.exp()
    kl_old = (m * (lm - lo)).sum(1).mean()
    kl_new = (m * (lm - ln)).sum(1).mean()
    return 1 - 0.5 * (kl_old + kl_new)


def not_local(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``-(1/C) sum_{y in set(B_Y)} L(f(x), y)``, averaged over the batch (eq. 8's lambda_1, lambda_2
    terms, negated): minimising it pushes recalled inputs away from the classes being trained."""
    logp = logits.log_softmax(1)
    return logp[:, present].sum(1).mean() / len(present)


def diversity(logits: torch.Tensor, eps: float = sys.float_info.epsilon) -> torch.Tensor:
    """``sum_c pbar_c log pbar_c`` of the batch-mean softmax (minus the entropy H of eq. 9's lambda_3)."""
    pbar = logits.softmax(1).mean(0).clamp(min=eps)
    return (pbar * pbar.log()).sum()


def sharpen(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits against their own argmax (eq. 9's lambda_4 term)."""
    return F.cross_entropy(logits, logits.argmax(1).detach())


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """``2 (mean squared vertical + mean squared horizontal differences) / batch`` (eq. 9's TV)."""
    b, c, h, w = x.shape
    h_tv = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum() / (c * (h - 1) * w)
    w_tv = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum() / (c * h * (w - 1))
    return 2 * (h_tv + w_tv) / b


def l2_prior(x: torch.Tensor) -> torch.Tensor:
    """Per-image L2 norms summed, divided by ``batch * pixels`` (eq. 9's L2, as the reference code)."""
    flat = x.reshape(len(x), -1)
    return flat.norm(dim=1).sum() / (len(x) * flat.shape[1])


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """``-sum_c softmax(target)_c log softmax(logits)_c``, batch mean (training on recalled data, eq. 6)."""
    return -(target_logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()


def bn_statistics_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """DeepInversion's feature-statistics prior: for every batch-norm layer, the distance of the
    batch's per-channel mean and variance to the layer's running statistics (0 without BN)."""
    losses: list[torch.Tensor] = []

    def hook(module, inputs, _):
        feat = inputs[0]
        dims = [0] + list(range(2, feat.ndim))
        mean, var = feat.mean(dims), feat.var(dims, unbiased=False)
        losses.append((mean - module.running_mean).norm() + (var - module.running_var).norm())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(losses).sum() if losses else x.new_zeros(())


# --------------------------------------------------------------------------- the memory

ARM_DEFAULTS = {
    "M": 10, "steps": 10, "step_size": 25.0, "lag": "task", "init": "batch", "objective": "arm",
    "divergence_weight": 1.0, "lambda1": 1.0, "lambda2": 0.1, "lambda3": 16.0, "lambda4": 0.1,
    "lambda5": 1.0, "lambda6": 1.0, "classes_weight": 1.0, "adaptive_weight": 1.0, "bn_weight": 1.0,
    "recall_mode": "train",
}


class SelfRecall(Memory):
    """ARM's memory: an old copy of the model and the recall of eq. 7-9 (``objective="arm"``), or
    Adaptive DeepInversion's generation of the seen classes (``objective="adi"``).

    The learner calls :meth:`observe` with each real batch before its step (the old model is
    refreshed there when the lag expires, as in the reference code) and :meth:`sample` after it.

    Settings (see :meth:`configure`): ``M`` recalled inputs, ``steps`` S, ``step_size`` eta_1,
    ``lag`` (``"task"``: refresh at the first batch of every task, equal to one task's iterations
    for equal-length tasks; or an int number of steps, 1 = unit lag), ``init`` (``"batch"``:
    start from the real batch, sampled with replacement when M > N; ``"noise"``: uniform noise),
    ``lambda1``-``lambda6`` and ``divergence_weight`` (eq. 8-9), and for ADI ``classes_weight``
    (cross-entropy of the old model towards randomly chosen seen, not present, classes),
    ``adaptive_weight`` (the divergence term) and ``bn_weight`` (batch-norm statistics);
    ``recall_mode`` (``"train"``, the reference's: the current and old models recall and give
    targets in train mode; ``"eval"``: with running batch-norm statistics; the same for the MLP).
    """

    name = "self_recall"

    def __init__(self, spec: MemorySpec, seed: int = 0, **settings):
        super().__init__(spec)
        self.settings = dict(ARM_DEFAULTS)
        self.configure(**settings)
        self.old: nn.Module | None = None
        self.steps_seen = 0
        self.last_refresh_step = 0
        self.last_t: int | None = None
        self.recall_on = False
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self.seen = torch.zeros(spec.n_classes, dtype=torch.bool)
        self.rng = np.random.default_rng(seed)
        self.last_init: torch.Tensor | None = None
        self.last_recall: torch.Tensor | None = None
        self.recalled_counts = torch.zeros(spec.n_classes, dtype=torch.int64)

    def configure(self, **settings) -> None:
        unknown = set(settings) - set(ARM_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown self_recall settings {sorted(unknown)}; valid: {sorted(ARM_DEFAULTS)}")
        self.settings.update(settings)
        lag = self.settings["lag"]
        if not (lag == "task" or (isinstance(lag, int) and lag >= 1)):
            raise ValueError(f"lag must be 'task' or a positive int of steps, got {lag!r}")
        if self.settings["objective"] not in ("arm", "adi"):
            raise ValueError(f"objective must be 'arm' or 'adi', got {self.settings['objective']!r}")
        if self.settings["init"] not in ("batch", "noise"):
            raise ValueError(f"init must be 'batch' or 'noise', got {self.settings['init']!r}")
        if self.settings["recall_mode"] not in ("train", "eval"):
            raise ValueError(f"recall_mode must be 'train' or 'eval', got {self.settings['recall_mode']!r}")
        if getattr(self, "old", None) is not None:
            self.old.train(self.settings["recall_mode"] == "train")

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> SelfRecall:
        """ARM stores no examples: any budget fits (the old model is reported as overhead)."""
        return cls(spec, **kwargs)

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> SelfRecall:
        return cls(spec, **kwargs)

    # ----------------------------------------------------------------- protocol
    def _refresh(self, model: nn.Module) -> None:
        """theta' <- theta: a frozen copy, in train mode for ``recall_mode="train"`` (the reference
        deep-copies its train-mode model and never switches it: batch norm then normalises recall
        and targets by batch statistics), else in eval mode."""
        self.old = copy.deepcopy(model).train(self.settings["recall_mode"] == "train")
        for p in self.old.parameters():
            p.requires_grad_(False)

    def observe(self, x: torch.Tensor, t: int | None, y: torch.Tensor, ctx: Any = None) -> None:
        """A real batch arrives, before the learner's step on it: refresh the old model if the lag
        has expired (Algorithm 1, lines 2 and 10-11) and remember the batch for recall."""
        lag = self.settings["lag"]
        if lag == "task" and t is None:
            raise ValueError("lag='task' needs task ids; give an int lag for task-free streams")
        new_task = t is not None and self.last_t is not None and t != self.last_t
        if self.old is None:
            self._refresh(ctx.model)  # theta' = theta at the start
        elif lag == "task" and new_task:
            self._refresh(ctx.model)
        elif lag != "task" and self.steps_seen - self.last_refresh_step >= lag:
            self._refresh(ctx.model)
            self.last_refresh_step = self.steps_seen
        # recall from the end of the first task on (task-free: after the first lag)
        if new_task or (t is None and self.steps_seen >= lag):
            self.recall_on = True
        self.last_t = t
        self.steps_seen += 1
        self.batch = (x.detach(), y)
        self.seen[y.unique().cpu()] = True

    def old_logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.old(x)

    def recall_objective(self, x_hat: torch.Tensor, model: nn.Module, present: torch.Tensor,
                         targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The loss the recalled inputs descend (eq. 8-9 for ARM, negated; ADI's otherwise)."""
        s = self.settings
        old = self.old(x_hat)
        new = model(x_hat)
        terms: dict[str, torch.Tensor] = {}
        if s["objective"] == "arm":
            terms["divergence"] = s["divergence_weight"] * neg_js_divergence(old, new)
            terms["not_local_old"] = s["lambda1"] * not_local(old, present)
            terms["not_local_new"] = s["lambda2"] * not_local(new, present)
            terms["diversity"] = s["lambda3"] * diversity(old)
        else:
            terms["classes"] = s["classes_weight"] * F.cross_entropy(old, targets)
            terms["adaptive"] = s["adaptive_weight"] * neg_js_divergence(old, new)
            terms["batch_stats"] = s["bn_weight"] * bn_statistics_loss(self.old, x_hat)
        terms["sharpen"] = s["lambda4"] * sharpen(old)
        terms["l2"] = s["lambda5"] * l2_prior(x_hat)
        terms["tv"] = s["lambda6"] * total_variation(x_hat)
        return sum(terms.values()), terms

    def sample(self, n: int | None = None, ctx: Any = None,
               generator: torch.Generator | None = None) -> ReplayBatch | None:
        """Recall a batch (Algorithm 1, lines 6-8): ``x`` the recalled inputs, ``y`` the old model's
        logits on them (soft targets), ``t`` -1 (recalled items have no task)."""
        if not self.recall_on or self.batch is None or self.old is None:
            return None
        s = self.settings
        x, y = self.batch
        m = n or s["M"]
        if s["init"] == "batch":
            idx = self.rng.choice(len(x), m, replace=m > len(x))
            x_hat = x[torch.from_numpy(idx).to(x.device)].clone()
        else:
            x_hat = torch.rand((m, *x.shape[1:]), generator=generator).to(x.device)
        self.last_init = x_hat.detach().clone()
        present = y.unique()
        targets = None
        if s["objective"] == "adi":
            pool = torch.nonzero(self.seen & ~torch.isin(torch.arange(len(self.seen)), present.cpu())).flatten()
            if len(pool) == 0:
                pool = torch.nonzero(self.seen).flatten()
            targets = pool[torch.from_numpy(self.rng.choice(len(pool), m, replace=m > len(pool)))].to(x.device)
        model = ctx.model
        was = model.training
        # the reference recalls with its model in train mode (batch statistics, and the recall
        # passes update the running ones); recall_mode="eval" reads the running statistics instead
        model.train(s["recall_mode"] == "train")
        for _ in range(s["steps"]):
            x_hat.requires_grad_(True)
            loss, _ = self.recall_objective(x_hat, model, present, targets)
            (grad,) = torch.autograd.grad(loss, x_hat)
            x_hat = (x_hat - s["step_size"] * grad).detach()
        model.train(was)
        target_logits = self.old_logits(x_hat)
        self.last_recall = x_hat
        self.recalled_counts += torch.bincount(target_logits.argmax(1).cpu(), minlength=len(self.seen))
        return ReplayBatch(x_hat, torch.full((m,), -1, dtype=torch.int64, device=x.device), target_logits)

    # ----------------------------------------------------------------- accounting
    @property
    def storage_bits(self) -> int:
        return 0

    @property
    def items(self) -> int:
        return 0

    @property
    def overhead_bits(self) -> int:
        """The old model at 32 bits per parameter (ARM's "+Model mem." column)."""
        return 0 if self.old is None else 32 * sum(p.numel() for p in self.old.parameters())

    def state_dict(self) -> dict:
        return {"old": None if self.old is None else {k: v.clone() for k, v in self.old.state_dict().items()},
                "steps_seen": self.steps_seen, "last_refresh_step": self.last_refresh_step,
                "last_t": self.last_t, "recall_on": self.recall_on, "batch": self.batch,
                "seen": self.seen.clone(), "rng": self.rng.bit_generator.state,
                "recalled_counts": self.recalled_counts.clone(), "settings": dict(self.settings)}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        self.old = None
        if state["old"] is not None:  # the old model is a copy of the learner's: rebuilt from ctx.model
            if getattr(ctx, "model", None) is None:
                raise ValueError("self_recall.load_state_dict needs ctx (the learner) to rebuild its old model")
            self.old = copy.deepcopy(ctx.model).train(state["settings"].get("recall_mode", "train") == "train")
            self.old.load_state_dict(state["old"])
            for p in self.old.parameters():
                p.requires_grad_(False)
        self.steps_seen, self.last_refresh_step = state["steps_seen"], state["last_refresh_step"]
        self.last_t, self.recall_on, self.batch = state["last_t"], state["recall_on"], state["batch"]
        self.seen = state["seen"].clone()
        self.rng.bit_generator.state = state["rng"]
        self.recalled_counts = state["recalled_counts"].clone()
        self.settings = dict(state["settings"])
