"""Callbacks: what logging and progress reporting see of a run.

A callback receives read-only views of one seed's run (the shape of Stable-Baselines3's and
Lightning's callbacks, not Avalanche's plugins that may write anywhere): numbers as floats,
matrices as read-only copies, images as detached copies. Nothing a callback does can change
training. The run's own logging (:class:`LoggingCallback`: TensorBoard, CSV, JSON lines, W&B
through :class:`agents.harness.logger.Logger`) and its per-task lines (:class:`ProgressLines`)
are callbacks like a user's (``run(..., callbacks=[...])``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch

from agents.harness import results
from agents.harness.logger import Logger


def frozen_array(a: np.ndarray | None) -> np.ndarray | None:
    """A read-only copy of ``a``."""
    if a is None:
        return None
    out = np.array(a, copy=True)
    out.setflags(write=False)
    return out


def frozen_numbers(values: Mapping) -> Mapping[str, float]:
    """``{name: float}`` of scalar values (tensors read once), read-only."""
    return MappingProxyType({k: float(v) for k, v in values.items()})


@dataclass(frozen=True)
class TrainStep:
    """A training step whose losses are logged (every ``log_every`` steps)."""

    seed: int
    steps: int
    examples: int
    losses: Mapping[str, float]


@dataclass(frozen=True)
class TaskEnd:
    """A task's end, after its evaluation.

    ``accuracy`` is the accuracy matrix so far (generative learners: the -ELBO matrix), NaN where
    not measured yet; ``generative`` holds ``neg_test_elbo``, ``frechet_distance`` and
    ``zd_consistency`` of this task end (None for classifiers).
    """

    env: str
    agent: str
    seed: int
    multi: bool
    task: int
    n_tasks: int
    steps: int
    total_steps: int
    examples: int
    accuracy: np.ndarray
    validation: np.ndarray | None
    online_accuracy: float | None
    generative: Mapping[str, float | None] | None
    last: bool
    storage: Mapping[str, float]
    summary: Mapping[str, float]
    memory_report: Mapping[str, float]
    visuals: Mapping[str, torch.Tensor]
    elapsed_s: float
    eta_s: float


class Callback:
    """Base callback: every hook does nothing; override the ones you need."""

    def on_start(self, config: Mapping, resumed_steps: int) -> None:
        """Once, before the first step of this process (``resumed_steps`` > 0 after ``--resume``)."""

    def on_train_step(self, step: TrainStep) -> None:
        """Every ``log_every`` steps, with that step's losses."""

    def on_task_end(self, view: TaskEnd) -> None:
        """At every task end, after the evaluation."""

    def before_checkpoint(self) -> None:
        """Right before a checkpoint is written (what was reported so far should reach the disk first)."""

    def on_end(self, final: Mapping[str, float], examples: int, status: str) -> None:
        """Once, when the run finished (``status`` ``completed`` or ``diverged``) with its final metrics."""

    def close(self) -> None:
        """The run stopped (finished or interrupted): release files."""


class LoggingCallback(Callback):
    """The run's scalars, heatmap, images and hparams through one :class:`Logger`."""

    def __init__(self, logger: Logger, generative: bool):
        self.logger, self.generative = logger, generative

    def on_start(self, config: Mapping, resumed_steps: int) -> None:
        if resumed_steps:
            return
        self.logger.text("config", "```json\n" + json.dumps(config, indent=2, default=str) + "\n```")
        self.logger.hparams(results.hparams_of(dict(config)),
                            ["final/neg_test_elbo", "final/frechet_distance"] if self.generative else
                            ["final/retained_accuracy", "final/backward_transfer", "final/forgetting",
                             "final/online_accuracy"])

    def on_train_step(self, step: TrainStep) -> None:
        self.logger.scalars(dict(step.losses), step.examples, "train/")

    def on_task_end(self, v: TaskEnd) -> None:
        log, t, T, x = self.logger, v.task, v.n_tasks, v.examples
        R = v.accuracy
        if v.generative is not None:
            cons = v.generative["zd_consistency"]
            log.scalars({f"task_{j}": R[t, j] for j in range(T)}, x, "eval/neg_elbo/")
            log.scalars({"neg_test_elbo": v.generative["neg_test_elbo"],
                         "frechet_distance": v.generative["frechet_distance"],
                         **({} if cons is None else {"zd_consistency": cons})}, x, "eval/")
        else:
            log.scalars({f"task_{j}": R[t, j] for j in range(T)}, x, "eval/accuracy/")
            if v.validation is not None:
                V = v.validation
                log.scalars({"retained_accuracy": V[t, : t + 1].mean(),
                             **{f"accuracy/task_{j}": V[t, j] for j in range(T)}}, x, "val/")
            log.scalars({"retained_accuracy": R[t, : t + 1].mean(), "online_accuracy": v.online_accuracy,
                         "task": t}, x, "eval/")
            log.accuracy_matrix(np.array(R), x, figure=v.last)
        log.scalars(dict(v.storage), x, "storage/")
        log.scalars(dict(v.summary), x)
        log.scalars(dict(v.memory_report), x)
        for tag, images in v.visuals.items():
            log.images(tag, images, x)

    def before_checkpoint(self) -> None:
        self.logger.flush()

    def on_end(self, final: Mapping[str, float], examples: int, status: str) -> None:
        self.logger.scalars({k: v for k, v in final.items() if v is not None}, examples, "final/")
        self.logger.end_session(status)

    def close(self) -> None:
        self.logger.close()


class ProgressLines(Callback):
    """One line per task end on stderr, with elapsed time and ETA (what ``cl-env run`` prints
    when stderr is not a terminal)."""

    def on_task_end(self, v: TaskEnd) -> None:
        t = v.task
        score = (f"-ELBO {v.generative['neg_test_elbo']:.1f}" if v.generative is not None
                 else f"retained acc. {v.accuracy[t, : t + 1].mean():.4f}")
        who = f" (seed {v.seed})" if v.multi else ""
        print(f"[task {t + 1}/{v.n_tasks}] {v.agent} on {v.env}{who}: {v.examples:,} examples, {score}, "
              f"elapsed {v.elapsed_s:.0f} s, ETA {v.eta_s:.0f} s", file=sys.stderr, flush=True)
