"""Distilled addressable memories (Deng & Russakovsky, *Remember the Past*).

A dataset is compressed into ``n`` bases ``b_k`` (stored at ``1/ds`` resolution, upsampled
bilinearly) and addressing matrices ``A_i`` (one per recall slot ``i``); a query ``y`` (a one-hot
label, or any vector) recalls ``x'_i = y^T A_i [b_0; ...; b_{n-1}]`` (eq. 2). Labels are not
stored: recalling class ``k`` means ``y = e_k``. Memories and addressing are learned by
back-propagation through time (Algorithm 1): a freshly initialised model is trained on the
recalled data by SGD with momentum for ``T`` steps, its loss on real data is differentiated
through the whole unroll, and the memories take an outer SGD step.

The unroll is differentiated by a hand-written reverse pass through SGD with momentum (as the
reference code does): the forward pass keeps only the parameters ``theta_t`` of every step (no
graph), and the reverse pass recomputes one step's gradient at a time with a graph, so memory
grows with ``T * |theta|``, not with ``T`` graphs of activations.

Storage (eq. 4, the reference formula): bases and addressing are 32-bit floats, and with ``K``
classes, ``n`` bases and ``ipc`` images per class of budget, the rows of addressing per class are
``floor((ipc * HWC * K - n * HWC / ds^2) / (K * n))``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from memory.addressable.budget import FLOAT_BITS, floats_for, rows_per_class
from memory.addressable.distillation import Distillation, Distiller
from memory.addressable.memories import AddressableMemories, bases_from_data
from memory.addressable.unroll import Unroll
from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits, to_uint8

MIN_BASES = 4  # below this many bases per task the recalled images span too small a family (2: chance)


class Addressable(Memory):
    """Compress-then-recall (§5.2) as a memory: each task distilled into its share of the budget.

    While a task streams in, the free part of the budget holds its examples (8-bit pixels and a
    label each, reservoir-sampled) and, every ``stream_every`` batches, the task's memories take
    one outer step on the incoming batch together with the buffer ("distillation with both buffer
    samples and streamed samples"); at the task end ``iterations`` more steps on the buffer, then
    the memories take the task's share (``1/T`` of the budget, as floats: ``n_bases`` bases and as
    many addressing rows per class as eq. 4 leaves) and the buffer is dropped. While streamed
    distillation is on, the task's share is reserved from its first batch (the buffer holds what
    is left), so storage never exceeds the budget. ``sample`` / ``sample_task`` recall examples, so
    ``er`` and ``gem`` can replay them; the ``recall`` agent trains a fresh model on all of them.

    Args:
        spec: The stream's shapes.
        total_bits: The budget in bits.
        n_bases: Bases per task (default: the most of 16, 8, 4, 2, 1 that leave at least 4
            addressing rows per class in the task's share; with 2 bases on MNIST-Rotations the
            recalled images span a 2-D family and a model trained on them stayed at chance).
        ds: Downsampling of the bases; None: 2 (half resolution, the reference's) for streams
            with spatial structure and 1 for pixel-permuted ones (``MemorySpec.spatial``): 200
            MANY images passed through 2x down/up-sampling train a model to 22.3 % against 74.7 %;
            but 2 again when a task's share cannot hold :data:`MIN_BASES` full-resolution bases
            (MANY at budget 800: 8 effective examples per task fit one 784-float base, every class
            is recalled as a multiple of one image and the per-task models scored 9.9 %, chance;
            at half resolution, 4 bases, 23.9 %; seed 0).
        iterations, inner_steps, inner_lr, momentum, batch_per_class, outer_lr, outer_momentum,
            clip, real_per_class: Algorithm 1 (see :class:`Unroll`, :class:`Distillation`); the
            defaults (100 iterations of 20 inner steps at lr 0.1, for the MLP) are small so a
            20-task stream distils in minutes on a CPU; the paper: 150 steps at lr 0.01 (ConvNet).
        stream_every: One outer step every this many incoming batches, on the batch and the
            buffer (2: 50 streamed steps per MNIST-Rotations task, 10 per MANY task); 0 distils
            at the task end only.
        seed: Seeds everything.
    """

    name = "addressable"
    static_items = True

    def __init__(self, spec: MemorySpec, total_bits: int, n_bases: int | None = None, ds: int | None = None,
                 iterations: int = 100,
                 inner_steps: int = 20, inner_lr: float = 0.1, momentum: float = 0.9, batch_per_class: int = 32,
                 outer_lr: float = 0.1, outer_momentum: float = 0.5, clip: float = 2.0, real_per_class: int = 64,
                 stream_every: int = 2, seed: int = 0):
        super().__init__(spec)
        share = (int(total_bits) // max(spec.n_tasks, 1) - spec.n_classes) // FLOAT_BITS
        if ds is None:
            ds = 2 if spec.spatial else 1
            if ds == 1 and floats_for(MIN_BASES, 4, spec.n_classes, spec.image_shape, 1) > share:
                ds = 2  # a share too small for 4 full-resolution bases: fewer bases would recall one image family
        self.total_bits, self.ds, self.seed = int(total_bits), int(ds), seed
        self.unroll = Unroll(inner_steps, inner_lr, momentum, batch_per_class)
        self.outer = Distillation(iterations, outer_lr, outer_momentum, clip, real_per_class)
        ipc = share / (spec.n_classes * spec.example_bits / 8)
        if n_bases is None:  # the most bases (<= 16) that leave 4 addressing rows per class
            fits = [n for n in (16, 8, 4, 2, 1) if floats_for(n, 4, spec.n_classes, spec.image_shape, self.ds) <= share]
            n_bases = fits[0] if fits else 1
        self.n_bases = int(n_bases)
        self.rows = rows_per_class(ipc, spec.image_shape, spec.n_classes, self.n_bases, self.ds)
        self.memories: dict[int, AddressableMemories] = {}
        self.buf_x: list[torch.Tensor] = []
        self.buf_y: list[torch.Tensor] = []
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.model_fn: Callable[[], nn.Module] | None = None
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if stream_every < 0:
            raise ValueError(f"stream_every must be >= 0 (0: distil at the task end only), got {stream_every}")
        self.stream_every = int(stream_every)
        self.current_t: int | None = None  # the task streaming in
        self.task_steps = 0  # its batches so far
        self.working: Distiller | None = None  # its memories, distilled while it streams

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> Addressable:
        return cls(spec, budget_bits(budget, spec), **kwargs)

    # ----------------------------------------------------------------- accounting
    @property
    def task_bits(self) -> int:
        """A task's memories: bases and addressing as floats, plus a bit per class saying whether the
        task had it (absent classes are not recalled)."""
        floats = floats_for(self.n_bases, self.rows, self.spec.n_classes, self.spec.image_shape, self.ds)
        return FLOAT_BITS * floats + self.spec.n_classes

    @property
    def slot_bits(self) -> int:
        return self.spec.example_bits + self.spec.label_bits

    @property
    def capacity(self) -> int:
        """Real examples the free part of the budget holds now (the streaming task's share is
        reserved while streamed distillation is on)."""
        shares = len(self.memories) + (1 if self.stream_every else 0)
        return max(0, (self.total_bits - shares * self.task_bits) // self.slot_bits)

    @property
    def storage_bits(self) -> int:
        working = self.task_bits if self.working is not None else 0
        return len(self.memories) * self.task_bits + working + len(self.buf_x) * self.slot_bits

    @property
    def items(self) -> int:
        return sum(self.task_items(t) for t in self.memories) + len(self.buf_x)

    # ----------------------------------------------------------------- stream
    def observe(self, x: torch.Tensor, t: int | None, y: torch.Tensor, ctx: Any = None) -> None:
        """Reservoir-sample the current task into the free part of the budget; every
        ``stream_every`` batches, one outer distillation step on this batch and the buffer."""
        if t != self.current_t:
            self.current_t, self.task_steps = t, 0
        self.task_steps += 1
        cap = self.capacity
        xs, ys = to_uint8(x.detach()), y.detach()
        for i in range(len(xs)):  # the buffer holds one example per entry
            self.seen += 1
            if len(self.buf_x) < cap:
                self.buf_x.append(xs[i:i + 1])
                self.buf_y.append(ys[i:i + 1])
            else:
                j = int(self.rng.integers(0, self.seen))
                if j < cap:
                    self.buf_x[j], self.buf_y[j] = xs[i:i + 1], ys[i:i + 1]
        if self.stream_every and self.task_steps % self.stream_every == 0:
            pool_x = torch.cat([*self.buf_x, xs]).float().div_(255.0) if self.buf_x else x.detach().float()
            pool_y = torch.cat([*self.buf_y, ys]) if self.buf_y else ys
            self._distiller(t, pool_x, pool_y, ctx).step(pool_x, pool_y)

    def _distiller(self, t: int, x: torch.Tensor, y: torch.Tensor, ctx: Any) -> Distiller:
        """Task ``t``'s working memories, created from ``x, y`` (bases from real images of the
        classes there; classes not yet seen start from the mean of the bases)."""
        if self.working is None:
            gen = torch.Generator().manual_seed(self.seed * 1000 + t)
            init, labels = bases_from_data(x.cpu(), y.cpu(), self.n_bases, gen)
            mem = AddressableMemories(self.spec.image_shape, self.spec.n_classes, self.n_bases, self.rows,
                                      self.ds, generator=gen, init=init, init_labels=labels).to(x.device)
            self.working = Distiller(mem, self._model_fn(ctx), self.unroll, self.outer, seed=self.seed * 1000 + t)
        return self.working

    def _model_fn(self, ctx: Any) -> Callable[[], nn.Module]:
        """What distils: ``model_fn``, else the learner's ``fresh_model``."""
        model_fn = self.model_fn or getattr(ctx, "fresh_model", None)
        if model_fn is None:
            raise ValueError("the addressable memory distils with a model: give it model_fn "
                             "(or use it from an agent, passed as ctx)")
        return model_fn

    def end_task(self, t: int, ctx: Any = None) -> None:
        """Finish task ``t``: ``iterations`` outer steps on the buffer, store the memories in the
        task's share, drop the buffer."""
        if not self.buf_x and self.working is None:
            self.current_t = None
            return
        d = self.working
        if self.buf_x:  # the last tasks may have no free room left: streamed steps only
            x = torch.cat(self.buf_x).float().div_(255.0)
            y = torch.cat(self.buf_y)
            d = self._distiller(t, x, y, ctx)
            for _ in range(self.outer.iterations):
                d.step(x, y)
        self.memories[t] = d.mem.requires_grad_(False)
        self._cache.pop(t, None)
        self.buf_x, self.buf_y, self.seen = [], [], 0
        self.working, self.current_t = None, None

    # ----------------------------------------------------------------- recall
    def recalled(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Task ``t``'s recalled images (clamped to [0, 1]) and labels."""
        if t not in self._cache:
            with torch.no_grad():
                x, y = self.memories[t].recall_classes()
            self._cache[t] = (x.clamp(0, 1), y)
        return self._cache[t]

    def all_recalled(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every task's recalled images, labels and task ids."""
        xs, ys, ts = [], [], []
        for t in sorted(self.memories):
            x, y = self.recalled(t)
            xs.append(x)
            ys.append(y)
            ts.append(torch.full_like(y, t))
        return torch.cat(xs), torch.cat(ys), torch.cat(ts)

    def tasks(self) -> list[int]:
        return sorted(self.memories)

    def task_items(self, t: int) -> int:
        return self.rows * len(self.memories[t].classes) if t in self.memories else 0

    def padded(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Recalled memories of ``tasks`` stacked for GEM: ``x (T, W, C, H, W)``, ``y (T, W)`` and a 0/1
        weight mask (tasks that lacked some classes recall fewer items)."""
        xs, ys = zip(*(self.recalled(t) for t in tasks), strict=True)
        width = max(len(y) for y in ys)
        x = torch.zeros((len(tasks), width, *self.spec.image_shape), device=xs[0].device)
        y = torch.zeros((len(tasks), width), dtype=ys[0].dtype, device=ys[0].device)
        w = torch.zeros((len(tasks), width), device=xs[0].device)
        for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
            x[i, : len(yi)], y[i, : len(yi)], w[i, : len(yi)] = xi, yi, 1.0
        return x, y, w

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        if not self.memories:
            return None
        x, y, t = self.all_recalled()
        idx = torch.randint(0, len(y), (n,), generator=generator).to(y.device)
        return ReplayBatch(x[idx], t[idx], y[idx])

    def sample_task(self, t: int, n: int | None = None, ctx: Any = None,
                    generator: torch.Generator | None = None) -> ReplayBatch | None:
        if t not in self.memories:
            return None
        x, y = self.recalled(t)
        if n is not None and n < len(y):
            idx = torch.randint(0, len(y), (n,), generator=generator).to(y.device)
            x, y = x[idx], y[idx]
        return ReplayBatch(x, torch.full_like(y, t), y)

    def visuals(self) -> dict[str, torch.Tensor]:
        if not self.memories:
            return {}
        t = max(self.memories)
        x, _ = self.recalled(t)
        return {"addressable/recalled_last_task": x[:: max(1, len(x) // 64)][:64]}

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        w = self.working
        working = None if w is None else {
            "mem": w.mem.to_state(), "opt": w.opt.state_dict(), "gen": w.gen.get_state(), "it": w.it,
            "losses": list(w.losses), "seed": w.seed}
        return copy.deepcopy({"memories": {t: m.to_state() for t, m in self.memories.items()},
                              "buf_x": self.buf_x, "buf_y": self.buf_y,
                              "seen": self.seen, "rng": self.rng.bit_generator.state,
                              "current_t": self.current_t, "task_steps": self.task_steps, "working": working})

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        state = copy.deepcopy(state)
        self.memories = {int(t): AddressableMemories.from_state(m) for t, m in state["memories"].items()}
        self.buf_x, self.buf_y = state["buf_x"], state["buf_y"]
        self.seen = state["seen"]
        self.rng.bit_generator.state = state["rng"]
        self._cache = {}
        self.current_t, self.task_steps = state.get("current_t"), state.get("task_steps", 0)
        self.working = None
        w = state.get("working")
        if w is not None:  # the streaming task's memories, mid-distillation
            d = Distiller(AddressableMemories.from_state(w["mem"]), self._model_fn(ctx), self.unroll, self.outer,
                          seed=w["seed"])
            d.opt.load_state_dict(w["opt"])
            d.gen.set_state(w["gen"])
            d.it, d.losses = w["it"], list(w["losses"])
            self.working = d
