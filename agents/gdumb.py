"""GDumb (Prabhu et al. 2020, "GDumb: A Simple Approach that Questions Our Progress in Continual
Learning")."""

from __future__ import annotations

import torch
from torch import nn

from agents.base import Agent


class GDumb(Agent):
    """A greedy class-balanced sampler, and a model retrained from scratch on the memory alone
    whenever it is evaluated (§3: "at inference ... we train a network from scratch on the samples
    in memory"). Nothing is learned from the stream itself.

    The memory is ``class_balanced`` (:func:`memory.buffers.balanced_slot`). At every task end
    (the runner evaluates there) a newly initialised model trains ``epochs`` passes over the memory
    with the authors' optimiser: SGD with momentum 0.9 and weight decay 1e-6, the learning rate
    following cosine annealing with warm restarts (``T_0 = 1``, ``T_mult = 2``) from ``lr`` down
    to ``min_lr``, gradients clipped to norm 10, batches of 16. CutMix, which the paper uses on
    CIFAR, is not applied.

    Settings:
        lr: The schedule's top rate (0.05).
        min_lr: Its floor (0.0005).
        epochs: Passes over the memory per retraining (64; the paper trains 256 on CIFAR).
        batch: Minibatch size (16).
        clip: Gradient-norm clip (10).
    """

    name = "gdumb"
    SETTINGS = {"lr": 0.05, "min_lr": 0.0005, "epochs": 64, "batch": 16, "clip": 10.0}
    SETTING_RULES = {"min_lr": "positive", "epochs": "count", "batch": "count", "clip": "positive"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.retrainings = 0

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
        return {}

    def retrain(self) -> nn.Module:
        """A fresh model trained on every item of the memory (the retraining's seed depends only on
        the run's seed and how many retrainings came before, so a resumed run repeats it)."""
        data = self.memory.all()
        init_seed = self.seed * 7919 + self.retrainings
        self.retrainings += 1
        if data is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                return self.make_model()
        s = self.settings
        return self.train_fresh_model(
            data.x, data.y, data.t, init_seed=init_seed, order_seed=self.seed + 31 * self.retrainings,
            epochs=s["epochs"], batch=s["batch"], clip=s["clip"],
            optimizer=lambda p: torch.optim.SGD(p, lr=s["lr"], momentum=0.9, weight_decay=1e-6),
            scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                opt, T_0=1, T_mult=2, eta_min=s["min_lr"]))

    MEMORY_FIRST = True  # retrain from what the memory holds after its own task end

    def on_task_end(self, t: int) -> None:
        """The retraining the evaluation will use (after the memory's task end)."""
        self.model = self.retrain()
        self.optimizer = self.make_optimizer()

    def extra_state(self) -> dict:
        return {"retrainings": self.retrainings}

    def load_extra_state(self, state: dict) -> None:
        self.retrainings = int(state["retrainings"])
