"""Compress-then-recall (Deng & Russakovsky, *Remember the Past*, §5.2).

No network learns during the stream: each task's examples fill the free part of the budget and
are distilled into the task's share of it at the task end (the ``addressable`` memory). After
every task a *fresh* model is trained on everything recalled so far, and that model is the one
evaluated.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from agents.base import Agent


class CompressThenRecall(Agent):
    """Settings:
        epochs: Epochs of the fresh model on the recalled data at each task end (50).
        lr: Its SGD learning rate (0.01, momentum 0.9: the paper's evaluation protocol).
        batch: Its minibatch size (256).
    """

    name = "recall"
    SETTINGS = {"lr": 0.01, "epochs": 50, "batch": 256}
    SETTING_RULES = {"epochs": "count", "batch": "count"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh_count = 0

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return {}

    def end_task(self, t: int) -> None:
        """Distil the task, then train a fresh model on all recalled memories."""
        self.memory.end_task(t, ctx=self)
        if not self.memory.tasks():
            return
        x, y, ts = self.memory.all_recalled()
        self.fresh_count += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 7919 + self.fresh_count)
            self.model = self.make_model()
        opt = torch.optim.SGD(self.model.parameters(), lr=self.settings["lr"], momentum=0.9)
        gen = torch.Generator().manual_seed(self.seed + 31 * self.fresh_count)
        self.model.train()
        for _ in range(self.settings["epochs"]):
            order = torch.randperm(len(y), generator=gen).to(y.device)
            for s in range(0, len(y), self.settings["batch"]):
                idx = order[s:s + self.settings["batch"]]
                logits = self.forward(x[idx], ts[idx] if self.masked else None)
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.optimizer = self.make_optimizer()

    def extra_state(self) -> dict:
        return {"fresh_count": self.fresh_count}

    def load_extra_state(self, state: dict) -> None:
        self.fresh_count = state["fresh_count"]
