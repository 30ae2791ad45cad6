"""Experience replay (Chaudhry et al. 2019, "On tiny episodic memories in continual learning")."""

from __future__ import annotations

import torch

from agents.base import Agent


class ExperienceReplay(Agent):
    """Each step trains on the current batch joined with ``replay_batch`` items from the memory.

    The memory sees the batch after the step, so a batch never replays itself. With a memory
    that returns soft targets (probabilities), the replayed part uses soft cross-entropy.

    Settings:
        replay_batch: Items replayed per step (10).
    """

    name = "er"
    SETTINGS = {"replay_batch": 10}
    SETTING_RULES = {"replay_batch": "count"}

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        mem = self.memory.sample(self.settings["replay_batch"], ctx=self, generator=self.generator)
        if mem is not None:
            r_logits = self.forward(mem.x, mem.t if self.masked else None)
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
