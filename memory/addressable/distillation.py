"""The distillation engine (*Remember the Past*, Algorithm 1's outer loop) and the evaluation
protocol (fresh models trained on the recalled data).

Memories and addressing are learned by back-propagation through time: a freshly initialised
model is trained on the recalled data by SGD with momentum for ``T`` steps
(:mod:`memory.addressable.unroll`), its loss on real data is differentiated through the whole
unroll, and the memories take an outer SGD step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from memory.addressable.memories import AddressableMemories
from memory.addressable.unroll import Unroll, bptt_gradient, minibatches


@dataclass
class Distillation:
    """Outer-loop settings of Algorithm 1 (reference: SGD lr 0.1, momentum 0.5, clip 2, 64 real per class)."""

    iterations: int = 200
    lr: float = 0.1
    momentum: float = 0.5
    clip: float = 2.0
    real_per_class: int = 64


class Distiller:
    """Algorithm 1's outer loop as a state that can be stepped: one :meth:`step` is one outer
    iteration on whatever real data is given, so a task can be distilled while it streams in
    (from each incoming batch and the buffer, as Remember the Past §5.2) and at its end.

    Each step: recall every present class's slots, initialise a fresh model with ``model_fn``,
    unroll the inner SGD, take the loss on ``real_per_class`` real images of every present class,
    and step the memories (SGD with momentum, gradient-norm clip). A step whose unroll diverged
    (non-finite loss or gradient) is skipped.
    """

    def __init__(self, mem: AddressableMemories, model_fn: Callable[[], nn.Module],
                 unroll: Unroll | None = None, outer: Distillation | None = None, seed: int = 0):
        self.mem, self.model_fn, self.seed = mem, model_fn, seed
        self.unroll, self.outer = unroll or Unroll(), outer or Distillation()
        self.gen = torch.Generator().manual_seed(seed)
        self.opt = torch.optim.SGD(mem.parameters(), lr=self.outer.lr, momentum=self.outer.momentum)
        self.it = 0
        self.losses: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One outer iteration with the real data ``(x, y)`` (floats in [0, 1]); recalls only the
        classes present in ``y`` or seen by earlier steps (``mem.classes``). Returns the loss."""
        mem, unroll, outer = self.mem, self.unroll, self.outer
        by_class = [torch.nonzero(y == k).flatten() for k in range(mem.n_classes)]
        present = [k for k in range(mem.n_classes) if len(by_class[k])]
        if not present:
            raise ValueError("distill needs at least one labelled example")
        known = set(mem.classes.tolist()) if self.it else set()
        mem.classes = torch.tensor(sorted(known | set(present)), device=mem.bases.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100003 + self.it)
            model = self.model_fn().to(mem.bases.device)
        self.it += 1
        params0 = {k: v.detach() for k, v in model.named_parameters()}
        x_syn, y_syn = mem.recall_classes()
        real_idx = torch.cat([by_class[k][torch.randint(0, len(by_class[k]), (outer.real_per_class,),
                                                        generator=self.gen)] for k in present])
        batches = minibatches(mem.rows, len(mem.classes), unroll, self.gen)
        d_x, loss = bptt_gradient(model, params0, x_syn, y_syn, x[real_idx.to(x.device)],
                                  y[real_idx.to(y.device)], unroll, [b.to(x_syn.device) for b in batches])
        self.losses.append(loss)
        if not (math.isfinite(loss) and torch.isfinite(d_x).all()):
            # the unroll diverged for this initialisation (a long unroll at a large inner lr can):
            # skip the step rather than write NaN into the memories (it cost a Fashion-MNIST seed)
            return loss
        self.opt.zero_grad(set_to_none=True)
        x_syn.backward(d_x)
        nn.utils.clip_grad_norm_(mem.parameters(), outer.clip)
        self.opt.step()
        return loss


def distill(mem: AddressableMemories, x: torch.Tensor, y: torch.Tensor, model_fn: Callable[[], nn.Module],
            unroll: Unroll | None = None, outer: Distillation | None = None, seed: int = 0,
            progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Learn ``mem`` from real data ``x`` (floats in [0, 1]) and labels ``y`` by BPTT (Algorithm 1):
    ``outer.iterations`` steps of a :class:`Distiller`. Returns the outer losses (NaN where a
    diverged unroll was skipped)."""
    d = Distiller(mem, model_fn, unroll, outer, seed)
    for it in range(d.outer.iterations):
        loss = d.step(x, y)
        if progress is not None and math.isfinite(loss):
            progress(it, loss)
    return d.losses


def train_fresh(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 300, lr: float = 0.01,
                momentum: float = 0.9, batch_size: int = 256, seed: int = 0) -> nn.Module:
    """Train ``model`` from its initialisation on ``(x, y)`` (SGD with momentum, the evaluation protocol)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    x, y = x.detach(), y.detach()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen).to(x.device)
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> float:
    model.eval()
    pred = torch.cat([model(x[s:s + chunk]).argmax(1) for s in range(0, len(x), chunk)])
    return float((pred == y).float().mean())


def evaluate_data(x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                  model_fn: Callable[[], nn.Module], repeats: int = 5, epochs: int = 300,
                  seed: int = 0) -> tuple[float, float]:
    """Mean and std test accuracy of ``repeats`` fresh models trained on ``(x, y)``."""
    accs = []
    for r in range(repeats):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 7919 + r)
            model = model_fn().to(x.device)
        accs.append(accuracy(train_fresh(model, x, y, epochs=epochs, seed=seed + r), x_test, y_test))
    return float(np.mean(accs)), float(np.std(accs))
