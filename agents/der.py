"""Dark Experience Replay: DER and DER++ (Buzzega et al. 2020, "Dark Experience for General
Continual Learning: a Strong, Simple Baseline")."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from agents.base import Agent


class DER(Agent):
    """Replay of the model's own past logits.

    Each step minimises, on the current batch ``(x, y)`` and replay batches drawn from a
    reservoir that stored each example's logits ``z`` when it was written (eq. 6 and 7)::

        CE(h(x), y) + alpha * mean ||h(x') - z'||^2 + beta * CE(h(x''), y'')

    with ``(x', z')`` and ``(x'', y'')`` two independent replay batches; ``beta = 0`` is DER and
    ``beta > 0`` DER++. The squared distance is averaged over logits, as the authors' code
    (Mammoth) does with ``F.mse_loss``. Logits are stored raw (never masked), so a masked head
    trains on masked logits but matches the stored ones over every class.

    Storage: every item costs its example, label and task id plus ``32 * n_classes`` bits of
    float32 logits (``memory.LogitReservoir``): at equal budget DER holds fewer items than ER.
    With ``--memory latent`` the items are activations at a cut point with their logits; every
    forward here goes through :meth:`Agent.forward`, which runs them above the cut only.

    Settings:
        alpha: Weight of the logit-matching term (0.3).
        beta: Weight of the replayed labels' cross-entropy (0: DER; ``derpp`` defaults to 0.5).
        replay_batch: Items per replay batch (10).
    """

    name = "der"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"alpha": 0.3, "beta": 0.0, "replay_batch": 10}
    SETTING_RULES = {"alpha": "non-negative", "beta": "non-negative", "replay_batch": "count"}

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        raw = self.forward(x, None) if self.masked and t is not None else logits
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        n = self.settings["replay_batch"]
        mem = self.memory.sample(n, ctx=self, generator=self.generator)
        if mem is not None:
            match = F.mse_loss(self.forward(mem.x, None, layer=mem.layer), mem.extras["logits"])
            loss = loss + self.settings["alpha"] * match
            out["logit_loss"] = match.detach()
            if self.settings["beta"] > 0:
                mem2 = self.memory.sample(n, ctx=self, generator=self.generator)
                r_loss = self.loss(self.forward(mem2.x, mem2.t if self.masked else None, layer=mem2.layer), mem2.y)
                loss = loss + self.settings["beta"] * r_loss
                out["replay_loss"] = r_loss.detach()
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self, logits=raw.detach())
        return out


class DERPP(DER):
    """DER++ (eq. 7): DER plus the replayed labels' cross-entropy, weighted by ``beta``.

    Settings:
        alpha: Logit-matching weight (0.1).
        beta: Replayed labels' weight (0.5).
    """

    name = "derpp"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"alpha": 0.1, "beta": 0.5}
