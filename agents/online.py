"""Online fine-tuning: one SGD step per batch, nothing kept (the lower bound of every table)."""

from __future__ import annotations

import torch

from agents.base import Agent


class Online(Agent):
    """Plain online SGD on the stream ("Online"/"single" in GEM and SRM, "naive" in ARM)."""

    name = "online"

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        self.sgd_step(loss)
        return {"loss": loss.detach()}

    @staticmethod
    def stacked_learn(stack, x, t, y, logits) -> dict[str, torch.Tensor]:
        """:meth:`learn` for the seeds of an :class:`agents.stacked.SeedStack` (per-seed ``(K,)`` losses)."""
        loss = stack.loss(logits, y)
        stack.sgd_step(loss)
        return {"loss": loss.detach()}
