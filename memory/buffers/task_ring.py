"""GEM's per-task ring buffer of real examples.

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits and each label at ``ceil(log2 n_classes)`` bits. The ring buffer needs no task
ids: the slot says the task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits, to_uint8
from memory.buffers.slots import _empty


class TaskRingBuffer(Memory):
    """GEM's episodic memory: the most recent examples of each task in a ring of fixed size.

    Args:
        spec: The stream's shape.
        per_task: Slots per task: an int for every task, or one int per task (``for_budget``
            spreads a budget's items over the tasks, the first tasks taking the remainder).
    """

    name = "task_ring"
    stackable = True  # reads no model: seeds can be stacked (agents.stacked)

    def __init__(self, spec: MemorySpec, per_task: int | list[int] = 256):
        super().__init__(spec)
        caps = [per_task] * spec.n_tasks if isinstance(per_task, int) else list(per_task)
        if len(caps) != spec.n_tasks or min(caps) < 0:
            raise ValueError(f"per_task must be >= 0 for each of the {spec.n_tasks} tasks, got {per_task}")
        self.caps = np.asarray(caps, dtype=np.int64)
        self.width = int(self.caps.max()) if len(caps) else 0
        self.x, self.y = _empty(spec, self.width, (spec.n_tasks,))
        self.count = np.zeros(spec.n_tasks, dtype=np.int64)  # examples written per task
        self._arange = torch.arange(max(self.width, 1), device=spec.device)

    @classmethod
    def item_bits(cls, spec: MemorySpec) -> int:
        return spec.example_bits + spec.label_bits

    @classmethod
    def default(cls, spec: MemorySpec, per_task: int | list[int] = 256, **kwargs) -> TaskRingBuffer:
        """GEM's protocol: 256 items per task (``memory.per_task`` sets another size)."""
        return cls(spec, per_task, **kwargs)

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> TaskRingBuffer:
        if "per_task" in kwargs:
            raise ValueError("task_ring: give either a budget or memory.per_task, not both "
                             "(the budget sets the items per task)")
        return cls.for_items(budget_bits(budget, spec) // cls.item_bits(spec), spec, **kwargs)

    @classmethod
    def for_items(cls, items: int, spec: MemorySpec, **kwargs) -> TaskRingBuffer:
        """``items`` slots in all, spread over the tasks (the first tasks take the remainder)."""
        if "per_task" in kwargs:
            raise ValueError("task_ring: give either --items or memory.per_task, not both "
                             "(--items sets the items per task)")
        base, extra = divmod(int(items), spec.n_tasks)
        return cls(spec, [base + (i < extra) for i in range(spec.n_tasks)], **kwargs)

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None) -> None:
        if not 0 <= int(t) < len(self.caps):  # a negative id would index from the end: another task's ring
            raise ValueError(f"t (task id): got {t}, expected a task of the stream, 0..{len(self.caps) - 1}")
        cap = int(self.caps[t])
        if cap == 0:
            return
        b = len(x)
        if b > cap:  # only the most recent fit
            x, y, b = x[-cap:], y[-cap:], cap
        start = int(self.count[t] % cap)
        slots = (self._arange[:b] + start) % cap
        self.x[t, slots] = to_uint8(x).to(self.x.device)
        self.y[t, slots] = y.to(self.y.device)
        self.count[t] += b

    def task_items(self, t: int) -> int:
        return int(min(self.count[t], self.caps[t]))

    def sample_task(self, t: int, n: int | None = None, ctx: Any = None,
                    generator: torch.Generator | None = None) -> ReplayBatch | None:
        k = self.task_items(t)
        if k == 0:
            return None
        if n is None or n >= k:
            x, y = self.x[t, :k], self.y[t, :k]
        else:
            idx = torch.randperm(k, generator=generator)[:n].to(self.x.device)
            x, y = self.x[t, idx], self.y[t, idx]
        return ReplayBatch(x.float().div_(255.0), torch.full_like(y, t), y)

    def padded(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stacked memories of ``tasks``: ``x (T, W, C, H, W)`` float, ``y (T, W)``, a 0/1 weight mask."""
        sel = torch.as_tensor(tasks, device=self.x.device)
        k = torch.as_tensor([self.task_items(t) for t in tasks], device=self.x.device)
        mask = (self._arange[: self.width].unsqueeze(0) < k.unsqueeze(1)).float()
        return self.x[sel].float().div_(255.0), self.y[sel], mask

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        return self.sample_from(self.tasks(), n, generator)

    def sample_from(self, tasks: list[int], n: int,
                    generator: torch.Generator | None = None) -> ReplayBatch | None:
        """``n`` items drawn uniformly, with replacement, from the memories of ``tasks``."""
        sizes = np.array([self.task_items(t) for t in tasks], dtype=np.int64)
        total = int(sizes.sum()) if len(sizes) else 0
        if total == 0:
            return None
        flat = torch.randint(0, total, (n,), generator=generator).numpy()
        ends = np.cumsum(sizes)
        which = np.searchsorted(ends, flat, side="right")
        offset = flat - (ends - sizes)[which]
        ti = torch.from_numpy(np.asarray(tasks, dtype=np.int64)[which]).to(self.x.device)
        si = torch.from_numpy(offset).to(self.x.device)
        return ReplayBatch(self.x[ti, si].float().div_(255.0), ti, self.y[ti, si])

    def tasks(self) -> list[int]:
        return [int(t) for t in np.nonzero(self.count)[0]]

    @property
    def items(self) -> int:
        return int(np.minimum(self.count, self.caps).sum())

    @property
    def storage_bits(self) -> int:
        return self.items * self.item_bits(self.spec)

    def state_dict(self) -> dict:
        return {"x": _snapshot(self.x), "y": self.y.clone(), "count": self.count.copy(), "caps": self.caps.copy()}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if not np.array_equal(state["caps"], self.caps):
            raise ValueError("checkpoint's per-task capacities differ from this buffer's")
        self.x.copy_(state["x"])
        self.y.copy_(state["y"])
        self.count = np.asarray(state["count"]).copy()


def _snapshot(v):
    """A copy of a tensor (a composed memory's own store, e.g. coded images, copies itself in its
    ``state_dict``)."""
    return v.clone() if isinstance(v, torch.Tensor) else v
