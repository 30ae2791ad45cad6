"""Generative learners of Lifelong Generative Modeling: ``lvae`` (student-teacher, eq. 6) and its
baselines ``vae`` (vanilla, or the ``upto`` / ``full`` upper bounds) and ``ewc_vae``.

They learn ``P(x)`` and do not classify: ``act`` predicts nothing useful (label 0), the runner
skips accuracies and records, after every task, the negative test ELBO on the union of the test
sets seen so far, the Fréchet distance of a fixed classifier's features between as many samples
and those test images, and the ``z_d`` consistency between teacher and student. The model and its
training live in the ``teacher`` memory (:mod:`memory.generative`), which ``er`` can also use as a
generative replay source ("GEN").
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.base import Agent

BOUNDS = (None, "upto", "full")


class GenerativeAgent(Agent):
    """A VAE learner over the stream; the ``teacher`` memory holds the model and the objective.

    Settings:
        bound: ``None``; ``"upto"`` (each batch joined with ``k`` times as many real examples of the
            ``k`` earlier tasks, all kept: an upper bound that stores everything it saw, counted in
            ``storage_bits``) or ``"full"`` (joined with examples of every task of the stream,
            including future ones: the bound the paper calls full-vae). ``vae`` only.
    """

    name = "lvae"
    generative = True
    SETTINGS = {"bound": None}
    SETTING_RULES = {"bound": (None, "upto", "full")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        bound = self.settings["bound"]
        if bound in ("none", "None", ""):
            bound = self.settings["bound"] = None
        if bound not in BOUNDS:
            raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
        if bound is not None and self.memory.mode != "vanilla":
            raise ValueError(f"bound={bound!r} is a baseline of the vanilla VAE: use --agent vae")
        self.seen: list[torch.Tensor] = []      # upto: uint8 batches of finished tasks
        self.current: list[torch.Tensor] = []   # upto: uint8 batches of the current task
        self.pool: torch.Tensor | None = None   # full: every task's training images, uint8

    def make_model(self) -> nn.Module:
        return nn.Module()  # the VAE lives in the memory

    def make_optimizer(self):
        return None

    def prepare(self, stream) -> None:
        """The ``full`` bound reads every task's training images once (no other agent does)."""
        if self.settings["bound"] == "full":
            self.pool = torch.cat([stream.tasks[t].train_examples()[0] for t in range(stream.n_tasks)]).to(self.device)

    def act(self, obs: dict):
        x = obs["x"]
        n = 1 if x.ndim == 3 else x.shape[0]
        if isinstance(x, torch.Tensor):
            pred = torch.zeros(n, dtype=torch.long, device=x.device)
            return pred if x.ndim == 4 else pred[0]
        return np.zeros(n, dtype=np.int64) if np.ndim(x) == 4 else 0

    def _extra(self, n: int) -> torch.Tensor | None:
        bound = self.settings["bound"]
        if bound == "upto" and self.seen:
            data = self.seen[0] if len(self.seen) == 1 else torch.cat(self.seen)
            self.seen = [data]
            k = self.memory.k_seen
            idx = torch.randint(0, len(data), (n * k,), generator=self.generator).to(data.device)
            return data[idx].float().div_(255.0)
        if bound == "full":
            idx = torch.randint(0, len(self.pool), (n * (self.info.n_tasks - 1),), generator=self.generator)
            return self.pool[idx.to(self.pool.device)].float().div_(255.0)
        return None

    def observe(self, obs: dict, y) -> dict[str, torch.Tensor]:
        x, t = self._inputs(obs)
        if self.settings["bound"] == "upto":
            self.current.append((x * 255).round().to(torch.uint8))
        y = torch.as_tensor(y, device=self.device).reshape(-1)
        self.memory.observe(x, t, y, ctx=self, extra=self._extra(len(x)))
        return self.memory.last_losses

    def on_task_end(self, t: int) -> None:
        if self.current:
            self.seen.extend(self.current)
            self.current = []

    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        raise TypeError(f"agent {self.name!r} is generative: it has no classifier to evaluate")

    def storage(self) -> dict[str, int]:
        out = super().storage()
        stored = sum(s.numel() for s in self.seen) + sum(s.numel() for s in self.current)
        out["storage_bits"] += 8 * stored
        out["items"] += stored // int(np.prod(self.info.image_shape))
        return out

    def extra_state(self) -> dict:
        return {"seen": self.seen, "current": self.current}

    def load_extra_state(self, state: dict) -> None:
        self.seen, self.current = list(state["seen"]), list(state["current"])


class VanillaVAE(GenerativeAgent):
    """One VAE trained on the stream, no teacher (the paper's vanilla-vae; upto-/full-vae with ``bound``)."""

    name = "vae"


class EWCVAE(GenerativeAgent):
    """Student-teacher VAE with the EWC penalty on the ELBO's diagonal Fisher instead of the
    consistency regulariser (§5, "EWC Learning Objective")."""

    name = "ewc_vae"
