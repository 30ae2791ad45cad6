"""Online fine-tuning: one SGD step per batch, nothing kept (the lower bound of every table)."""

from __future__ import annotations

import torch

from agents.base import Agent


class Online(Agent):
    """Plain online SGD on the stream ("Online"/"single" in GEM and SRM, "naive" in ARM)."""

    name = "online"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        self.sgd_step(loss)
        return {"loss": loss.detach()}

