"""Compress-then-recall (Deng & Russakovsky, *Remember the Past*, §5.2).

No network learns during the stream: each task's examples are distilled into the task's share of
the budget (the ``addressable`` memory), from the incoming batches and the buffer while the task
streams and from the buffer at its end. Then, as the paper: "during test phase, we simply fetch
the corresponding memories and addressing matrices for each task, and train a new model from
scratch" — one fresh model per task, trained on that task's recalled memories only and evaluated
on that task (``protocol="per_task"``: it uses the task identity at test time). ``"joint"``
trains one fresh model on everything recalled so far instead (no task identity at test time).
"""

from __future__ import annotations

import torch
from torch import nn

from agents.base import Agent


class CompressThenRecall(Agent):
    """Settings:
        protocol: ``"per_task"`` (the paper: a fresh model per task on its own memories, chosen by
            the test task's id) or ``"joint"`` (one fresh model on all recalled memories).
        epochs: Epochs of each fresh model on its recalled data (50).
        lr: Its SGD learning rate (0.01, momentum 0.9: the paper's evaluation protocol).
        batch: Its minibatch size (256).

    The per-task models are trained once, when their task's memories are final (the memories do
    not change afterwards, so this equals training them at test time, as the paper); they are a
    cache of that computation, not storage: ``storage_bits`` counts the memories only.
    """

    name = "recall"
    SETTINGS = {"lr": 0.01, "epochs": 50, "batch": 256, "protocol": "per_task"}
    SETTING_RULES = {"epochs": "count", "batch": "count", "protocol": ("per_task", "joint")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh_count = 0
        self.task_models: dict[int, nn.Module] = {}

    @property
    def uses_test_task_ids(self) -> bool:
        return self.settings["protocol"] == "per_task" or super().uses_test_task_ids

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return {}

    def _train_fresh(self, x: torch.Tensor, y: torch.Tensor, ts: torch.Tensor) -> nn.Module:
        """A newly initialised model trained ``epochs`` epochs on ``(x, y)`` (SGD, momentum 0.9)."""
        self.fresh_count += 1
        model = self.train_fresh_model(
            x, y, ts, init_seed=self.seed * 7919 + self.fresh_count, order_seed=self.seed + 31 * self.fresh_count,
            epochs=self.settings["epochs"], batch=self.settings["batch"],
            optimizer=lambda p: torch.optim.SGD(p, lr=self.settings["lr"], momentum=0.9))
        return model.eval()

    MEMORY_FIRST = True  # the memory distils the task first

    def on_task_end(self, t: int) -> None:
        """Train the fresh model(s) on the recalled memories (after the memory distilled the task)."""
        if not self.memory.tasks():
            return
        if self.settings["protocol"] == "per_task":
            if t in self.memory.tasks():
                x, y = self.memory.recalled(t)
                self.task_models[t] = self._train_fresh(x, y, torch.full_like(y, t))
                self.model = self.task_models[t]
        else:
            self.model = self._train_fresh(*self.memory.all_recalled())
        self.optimizer = self.make_optimizer()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Per task: task ``t``'s own model (the latest model for a task not learned yet, or when
        no task id is given); joint: the one model."""
        if self.settings["protocol"] == "per_task" and t is not None and t in self.task_models:
            return self.forward(x.to(self.device), t, self.task_models[t])  # kept in eval mode
        return super().predict(x, t)

    def extra_state(self) -> dict:
        return {"fresh_count": self.fresh_count,
                "task_models": {int(t): m.state_dict() for t, m in self.task_models.items()}}

    def load_extra_state(self, state: dict) -> None:
        self.fresh_count = state["fresh_count"]
        self.task_models = {}
        for t, sd in (state.get("task_models") or {}).items():
            m = self.make_model()
            m.load_state_dict(sd)
            self.task_models[int(t)] = m.eval()
