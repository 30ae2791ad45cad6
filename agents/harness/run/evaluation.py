"""Evaluation at task ends: every task's whole test set (classifiers), or the test ELBO and the
Fréchet distance on the tasks seen so far (generative learners)."""

from __future__ import annotations

import numpy as np
import torch

from agents.base import Agent
from agents.harness.evaluators import generative_frechet
from cl_env import metrics
from memory.generative import negative_elbo

EVAL_CHUNK = 1000


def scores(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]],
           task_il: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Accuracy on each task's whole test set (``uint8`` images, batched by ``EVAL_CHUNK``) and, with
    ``task_il``, the Task-IL accuracy of the same logits: the argmax among task ``j``'s own classes
    (``agent.class_mask[j]``), as Mammoth scores a class-incremental run in both scenarios at once
    (its ``mask_classes``); None without it."""
    mask = agent.class_mask if task_il else None
    return scores_of(lambda x, j: agent.predict(x, j).unsqueeze(0), 1, mask, tests, task_il)[0]


def scores_of(predict, n: int, class_mask: torch.Tensor | None, tests: list[tuple[torch.Tensor, torch.Tensor]],
              task_il: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """:func:`scores` of ``n`` models at once: ``predict(x, j)`` gives their logits ``(n, B, C)`` on
    one chunk of task ``j``'s test images (``float``, in ``[0, 1]``), e.g. stacked seeds' models
    (:meth:`agents.stacked.SeedStack.predict`); per model, ``(accuracy, task_il or None)``."""
    correct, within = [], []
    for j, (x, y) in enumerate(tests):
        c = torch.zeros(n, dtype=torch.int64, device=y.device)
        w = torch.zeros(n, dtype=torch.int64, device=y.device)
        for s in range(0, len(y), EVAL_CHUNK):
            logits = predict(x[s:s + EVAL_CHUNK].float().div_(255.0), j)
            yj = y[s:s + EVAL_CHUNK]
            c += (logits.argmax(-1) == yj).sum(-1)
            if task_il:
                masked = logits.masked_fill(~class_mask[j], float("-inf"))
                w += (masked.argmax(-1) == yj).sum(-1)
        correct.append(c)
        within.append(w)
    counts = np.array([len(y) for _, y in tests], dtype=np.float64)
    acc = torch.stack(correct, 1).cpu().numpy() / counts
    til = torch.stack(within, 1).cpu().numpy() / counts if task_il else None
    return [(acc[k], None if til is None else til[k]) for k in range(len(acc))]


def evaluate(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """Accuracy on each task's whole test set (see :func:`scores`)."""
    return scores(agent, tests)[0]


def matrix_fields(prefix: str, M: np.ndarray, rows: list[int], completed: bool) -> dict:
    """``{prefix}_accuracy_matrix`` (the evaluated ``rows``) and ``{prefix}_retained_accuracy`` (None
    unless the run completed) for a :class:`Result`."""
    return {f"{prefix}_accuracy_matrix": [M[i].tolist() for i in rows],
            f"{prefix}_retained_accuracy": metrics.retained_accuracy(M) if completed else None}


def evaluate_generative(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]], t: int,
                        net) -> tuple[np.ndarray, float, float]:
    """Per-task -ELBO of every task, -ELBO and Fréchet distance on the union of tasks ``0..t``."""
    model = agent.memory.model
    per_task = np.array([negative_elbo(model, x.float().div(255.0)) for x, _ in tests])
    counts = np.array([len(y) for _, y in tests[: t + 1]], dtype=np.float64)
    union_elbo = float((per_task[: t + 1] * counts).sum() / counts.sum())
    real = torch.cat([x for x, _ in tests[: t + 1]]).float().div_(255.0)
    samples = agent.memory.generate(len(real), generator=torch.Generator().manual_seed(agent.seed + 99))
    return per_task, union_elbo, generative_frechet(net, samples, real)
