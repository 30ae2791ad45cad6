"""Learning without Forgetting (Li & Hoiem 2017) for a stream: distil the previous task's model."""

from __future__ import annotations

import copy

import torch

from agents.base import Agent
from agents.models import param_bits


def distillation_loss(logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation: ``T^2 * KL(softmax(old/T) || softmax(new/T))``, batch mean.

    Masked (``-inf``) logits are left out of both distributions.
    """
    finite = torch.isfinite(old_logits) & torch.isfinite(logits)
    new = logits.masked_fill(~finite, -1e9) / temperature
    old = old_logits.masked_fill(~finite, -1e9) / temperature
    p_old = old.softmax(1)
    kl = (p_old * (old.log_softmax(1) - new.log_softmax(1))).sum(1)
    return temperature**2 * kl.mean()


class LwF(Agent):
    """From the second task on, the loss adds ``alpha`` times the distillation of the model as it
    was at the end of the previous task, on the current batch.

    ``update="joint"`` is classic LwF: one step on ``CE + alpha * distillation``. ``"two_step"``
    is the "Distill (LwF)" baseline of ARM's Table 6 (its reference ``code/scripts/distill.py``):
    a cross-entropy step on the batch, then a separate step on ``alpha`` times the distillation
    of the old model's outputs on the same batch, recomputed with the updated model; ARM runs it
    at temperature 1 (``--set update=two_step temperature=1``).

    Settings:
        alpha: Weight of the distillation term (1.0).
        temperature: Softmax temperature (2.0).
        update: ``"joint"`` (classic LwF) or ``"two_step"`` (ARM's Distill baseline).
    """

    name = "lwf"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"alpha": 1.0, "temperature": 2.0, "update": "joint"}
    SETTING_RULES = {"alpha": "non-negative", "temperature": "positive", "update": ("joint", "two_step")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.old = None

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        old_logits = None
        if self.old is not None:
            with torch.no_grad():
                old_logits = self.old(x)
        T = self.settings["temperature"]
        if self.settings["update"] == "two_step":
            self.sgd_step(loss)  # the CE step; the distillation step below sees its weights
            if old_logits is not None:
                d = distillation_loss(self.forward(x, t), old_logits, T)
                self.sgd_step(self.settings["alpha"] * d)
                out["distillation"] = d.detach()
            return out
        if old_logits is not None:
            d = distillation_loss(logits, old_logits, T)
            loss = loss + self.settings["alpha"] * d
            out["distillation"] = d.detach()
        self.sgd_step(loss)
        return out

    def on_task_end(self, t: int) -> None:
        self.old = copy.deepcopy(self.model).eval()
        for p in self.old.parameters():
            p.requires_grad_(False)

    @property
    def overhead_bits(self) -> int:
        return 0 if self.old is None else param_bits(self.old)

    def extra_state(self) -> dict:
        return {"old": None if self.old is None else self.old.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        if state["old"] is None:
            self.old = None
        else:
            self.on_task_end(-1)
            self.old.load_state_dict(state["old"])
