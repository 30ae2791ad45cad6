"""iCaRL (Rebuffi et al. 2017, "iCaRL: Incremental Classifier and Representation Learning")."""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

from agents.base import Agent
from agents.models import embed, param_bits


def icarl_targets(y: torch.Tensor, old_probs: torch.Tensor | None, new_classes: torch.Tensor,
                  old_classes: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Algorithm 3's targets: one-hot labels for the current task's classes and the old model's
    sigmoid outputs ``q`` for the classes learned before (zero elsewhere)."""
    target = torch.zeros(len(y), n_classes, device=y.device)
    target[:, new_classes] = F.one_hot(y, n_classes).float()[:, new_classes]
    if old_probs is not None and len(old_classes):
        target[:, old_classes] = old_probs[:, old_classes]
    return target


def nearest_mean(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The nearest-mean-of-exemplars rule (Algorithm 1) as scores: ``-||phi(x) - mu_y||`` with
    L2-normalised features and means (§2.1), so the argmax is the nearest class mean."""
    phi = F.normalize(features, dim=1)
    return -torch.cdist(phi, means)


class ICaRL(Agent):
    """iCaRL in a one-pass stream: a sigmoid classifier trained with distillation on the current
    batch plus replayed exemplars, herding exemplar selection, and the nearest-mean-of-exemplars
    classifier at evaluation.

    Each step trains on the current batch joined with ``replay_batch`` exemplars of the old
    classes (Algorithm 3): binary cross-entropy with logits, summed over the classes seen so far
    and averaged over examples, against one-hot targets for the current task's classes and the
    previous task's model's sigmoid outputs for the old ones (:func:`icarl_targets`). At a task's
    end the ``herding`` memory picks the new classes' exemplars (Algorithm 4) and the class means
    ``mu_y`` of the normalised features of each class's exemplars are computed (the means are
    re-normalised); :meth:`predict` scores ``-||phi(x) - mu_y||`` over the classes seen
    (``classifier="nme"``, the paper's) or returns the network's logits (``"network"``, the
    paper's "hybrid 1"). The frozen previous model counts as overhead. Where the stream departs
    from the paper's offline protocol (one pass, candidates limited to the memory's free space)
    see :class:`memory.buffers.HerdingExemplars`.

    Settings:
        replay_batch: Exemplars per step (10).
        classifier: ``"nme"`` or ``"network"``.
    """

    name = "icarl"
    SETTINGS = {"replay_batch": 10, "classifier": "nme"}
    SETTING_RULES = {"replay_batch": "count", "classifier": ("nme", "network")}
    needs_task_labels = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.old_model = None
        self.task = None
        self.seen: list[int] = []
        self.means: torch.Tensor | None = None  # (n_seen, D), rows in the order of self.seen

    def _begin(self, t: int) -> None:
        self.task = t
        self.memory.begin_task(self.info.task_classes[t], t)
        self.seen = list(self.memory.classes_seen)

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        if t != self.task:
            self._begin(t)
        new = torch.as_tensor(self.info.task_classes[t], device=self.device)
        old = torch.as_tensor([c for c in self.seen if c not in set(new.tolist())], dtype=torch.long,
                              device=self.device)
        xs, ys, out_logits = x, y, logits
        mem = self.memory.sample(self.settings["replay_batch"], ctx=self, generator=self.generator)
        if mem is not None:
            xs = torch.cat([x, mem.x])
            ys = torch.cat([y, mem.y])
            out_logits = torch.cat([logits, self.model(mem.x)])
        old_probs = None
        if self.old_model is not None:
            with torch.no_grad():
                old_probs = torch.sigmoid(self.old_model(xs))
        target = icarl_targets(ys, old_probs, new, old, self.info.n_classes)
        cols = torch.as_tensor(self.seen, device=self.device)
        loss = F.binary_cross_entropy_with_logits(out_logits[:, cols], target[:, cols],
                                                  reduction="sum") / len(ys)
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t, y, ctx=self)
        return {"loss": loss.detach()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            z = embed(self.model, x)
        self.model.train(was)
        return z

    def class_means(self) -> torch.Tensor | None:
        """``mu_y`` per class seen: the mean of its exemplars' normalised features, normalised
        (None when the memory holds no exemplar: ``K`` smaller than the sets; then the network's
        logits classify)."""
        ex = self.memory.exemplars()
        if ex is None:
            return None
        phi = F.normalize(self.features(ex.x), dim=1)
        rows = []
        for c in self.seen:
            sel = ex.y == c
            rows.append(F.normalize(phi[sel].mean(0), dim=0) if sel.any() else torch.zeros(phi.shape[1], device=phi.device))
        return torch.stack(rows)

    def on_task_end(self, t: int) -> None:
        """Herding selection of the exemplars, the class means, the old model for distillation."""
        if self.task != t:  # a task with no batch learned
            self._begin(t)
        self.memory.select(self.features)
        self.means = self.class_means()
        self.old_model = copy.deepcopy(self.model).requires_grad_(False)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        if self.settings["classifier"] == "network" or self.means is None:
            return super().predict(x, t)
        x = x.to(self.device)
        scores = nearest_mean(self.features(x), self.means)
        out = torch.full((len(x), self.info.n_classes), float("-inf"), device=self.device)
        out[:, torch.as_tensor(self.seen, device=self.device)] = scores
        if self.masked and t is not None:
            out = out.masked_fill(~self.class_mask[t], float("-inf"))
        return out

    @property
    def overhead_bits(self) -> int:
        return 0 if self.old_model is None else param_bits(self.old_model)

    def extra_state(self) -> dict:
        return {"old_model": None if self.old_model is None else self.old_model.state_dict(),
                "task": self.task, "seen": list(self.seen), "means": self.means}

    def load_extra_state(self, state: dict) -> None:
        self.task, self.seen, self.means = state["task"], list(state["seen"]), state["means"]
        if state["old_model"] is not None:
            self.old_model = copy.deepcopy(self.model).requires_grad_(False)
            self.old_model.load_state_dict(state["old_model"])
