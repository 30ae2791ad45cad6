"""Evaluation at task ends: every task's whole test set (classifiers), or the test ELBO and the
Fréchet distance on the tasks seen so far (generative learners)."""

from __future__ import annotations

import numpy as np
import torch

from agents.base import Agent
from agents.harness.evaluators import generative_frechet
from memory.generative import negative_elbo

EVAL_CHUNK = 1000


def evaluate(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """Accuracy on each task's whole test set (``uint8`` images, batched by ``EVAL_CHUNK``)."""
    correct = []
    for j, (x, y) in enumerate(tests):
        c = torch.zeros((), dtype=torch.int64, device=y.device)
        for s in range(0, len(y), EVAL_CHUNK):
            logits = agent.predict(x[s:s + EVAL_CHUNK].float().div_(255.0), j)
            c += (logits.argmax(1) == y[s:s + EVAL_CHUNK]).sum()
        correct.append(c)
    counts = np.array([len(y) for _, y in tests], dtype=np.float64)
    return torch.stack(correct).cpu().numpy() / counts


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
