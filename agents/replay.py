"""Experience replay (Chaudhry et al. 2019, "On tiny episodic memories in continual learning")."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from agents.base import Agent


class ExperienceReplay(Agent):
    """Each step trains on the current batch joined with ``replay_batch`` items from the memory.

    The memory sees the batch after the step, so a batch never replays itself. With a memory
    that returns soft targets (probabilities), the replayed part uses soft cross-entropy. With a
    feature memory (``latent``) the replayed items are activations at a cut point
    (``ReplayBatch.layer``): the same forward runs them through the layers above the cut only.

    Settings:
        replay_batch: Items replayed per step (10).
    """

    name = "er"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"replay_batch": 10}
    SETTING_RULES = {"replay_batch": "count"}

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        mem = self.memory.sample(self.settings["replay_batch"], ctx=self, generator=self.generator)
        if mem is not None:
            r_logits = self.forward(mem.x, mem.t if self.masked else None, layer=mem.layer)
            if mem.y.dtype.is_floating_point:  # soft targets
                r_loss = -(mem.y * r_logits.log_softmax(1)).sum(1).mean()
            else:
                r_loss = self.loss(r_logits, mem.y)
            n, m = len(y), len(mem.y)
            loss = (loss * n + r_loss * m) / (n + m)  # the mean over the joined batch
            out["replay_loss"] = r_loss.detach()
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return out

def ace_incoming_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ER-ACE's loss on the incoming batch: the cross-entropy over the classes present in the
    batch, the other logits masked out (they get no gradient)."""
    present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    present[y] = True
    return F.cross_entropy(logits.masked_fill(~present, float("-inf")), y)


class ERACE(ExperienceReplay):
    """ER with the asymmetric cross-entropy (ER-ACE, Caccia et al. 2022, "New Insights on Reducing
    Abrupt Representation Change in Online Continual Learning", §4).

    The incoming batch's cross-entropy is taken over the classes present in that batch only
    (the other logits masked out), so new classes do not push the old ones' logits down; the
    replayed batch's cross-entropy is over every class. The two means are added::

        CE_{classes in x}(h(x), y) + CE(h(x_mem), y_mem)

    Settings:
        replay_batch: Items replayed per step (10).
    """

    name = "er_ace"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = ace_incoming_loss(logits, y)
        out = {"loss": loss.detach()}
        mem = self.memory.sample(self.settings["replay_batch"], ctx=self, generator=self.generator)
        if mem is not None:
            r_loss = self.loss(self.forward(mem.x, mem.t if self.masked else None), mem.y)
            loss = loss + r_loss
            out["replay_loss"] = r_loss.detach()
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return out


def interference_scores(loss_before: torch.Tensor, loss_after: torch.Tensor) -> torch.Tensor:
    """MIR's criterion (Aljundi et al. 2019, eq. 1-2): how much each candidate's loss rises under
    the virtual update, ``l(f_{theta_v}(x), y) - l(f_theta(x), y)``."""
    return loss_after - loss_before


class MIR(ExperienceReplay):
    """Maximally Interfered Retrieval (Aljundi et al. 2019, "Online Continual Learning with
    Maximally Interfered Retrieval", Algorithm 1, ER-MIR).

    Per step: a virtual SGD step on the incoming batch, ``theta_v = theta - lr * grad L(x, y)``;
    ``candidates`` items drawn from the memory are scored by :func:`interference_scores`; the
    ``replay_batch`` highest-scoring ones join the batch for the real step (as ER: one mean over
    the joined batch). The virtual parameters are never written into the model
    (``torch.func.functional_call``); the incoming batch's gradient is computed once.

    Settings:
        replay_batch: Retrieved items per step (10).
        candidates: Memory items scored per step (50, the reference code's subsample size).
    """

    name = "mir"
    SETTINGS = {"candidates": 50}
    SETTING_RULES = {"candidates": "count"}

    def retrieve(self, loss: torch.Tensor, cand) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the ``replay_batch`` candidates whose loss the virtual step on ``loss``
        (the incoming batch's) raises most, and every candidate's score."""
        from torch.func import functional_call

        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        lr = self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else self.settings["lr"]
        with torch.no_grad():
            virtual = {n: p - lr * g for n, p, g in zip(names, params, grads, strict=True)}
            ct = cand.t if self.masked else None
            before = F.cross_entropy(self.forward(cand.x, ct), cand.y, reduction="none")
            after = F.cross_entropy(self.forward(cand.x, ct, lambda z: functional_call(self.model, virtual, (z,))),
                                    cand.y, reduction="none")
            scores = interference_scores(before, after)
            return scores.topk(min(self.settings["replay_batch"], len(scores))).indices, scores

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        cand = self.memory.sample(self.settings["candidates"], ctx=self, generator=self.generator)
        if cand is None:
            self.sgd_step(loss)
            self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
            return out
        top, scores = self.retrieve(loss, cand)
        k = len(top)
        r_logits = self.forward(cand.x[top], cand.t[top] if self.masked else None)
        r_loss = self.loss(r_logits, cand.y[top])
        n, m = len(y), k
        total = (loss * n + r_loss * m) / (n + m)
        out["replay_loss"] = r_loss.detach()
        out["interference"] = scores[top].mean().detach()
        self.sgd_step(total)
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return out
