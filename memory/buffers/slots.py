"""The slot buffers' common base and the reservoir rule they share.

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and each task id at
``ceil(log2 n_tasks)`` bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cl_env import checks
from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits, to_uint8


def reservoir_slots(n_seen: int, batch: int, capacity: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reservoir sampling (Vitter 1985) for a batch: which examples are written where.

    Example ``i`` of the batch is the ``n_seen + i``-th of the stream; it fills the next free slot
    while there is one, else replaces a uniform index in ``[0, n_seen + i]`` if that falls inside
    the buffer. When two examples of the batch draw the same slot the later one wins, as in the
    sequential rule.

    Returns:
        ``(src, dst)``: batch positions and the distinct slots they go to.
    """
    pos = n_seen + np.arange(batch)
    slots = np.where(pos < capacity, pos, (rng.random(batch) * (pos + 1)).astype(np.int64))
    keep = slots < capacity
    src, dst = np.nonzero(keep)[0], slots[keep]
    _, last = np.unique(dst[::-1], return_index=True)
    return src[::-1][last], dst[::-1][last]


def _empty(spec: MemorySpec, n: int, lead: tuple[int, ...] = ()) -> tuple[torch.Tensor, ...]:
    dev = torch.device(spec.device)
    return (torch.zeros(*lead, n, *spec.image_shape, dtype=torch.uint8, device=dev),
            torch.zeros(*lead, n, dtype=torch.int64, device=dev))


class SlotBuffer(Memory):
    """Base of the buffers that hold up to ``capacity`` real examples in slots, each with its
    label and task id (``uint8`` pixels): storage per item is an example, a label and a task id.
    Subclasses decide which slots are written (their write policy) and how many are held
    (:attr:`items`: slots ``[0, items)``, unless they say otherwise)."""

    def __init__(self, spec: MemorySpec, capacity: int):
        super().__init__(spec)
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self.x, self.y = _empty(spec, self.capacity)
        self.t = torch.zeros(self.capacity, dtype=torch.int64, device=spec.device)

    @classmethod
    def item_bits(cls, spec: MemorySpec) -> int:
        return spec.example_bits + spec.label_bits + spec.task_bits

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> SlotBuffer:
        """256 items, the size GEM gives each task."""
        return cls(spec, 256, **kwargs)

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> SlotBuffer:
        return cls(spec, budget_bits(budget, spec) // cls.item_bits(spec), **kwargs)

    @classmethod
    def for_items(cls, items: int, spec: MemorySpec, **kwargs) -> SlotBuffer:
        """``items`` slots (the capacity the papers state as "buffer size")."""
        return cls(spec, int(items), **kwargs)

    def _put(self, dst, src, x: torch.Tensor, y: torch.Tensor, t: int) -> torch.Tensor:
        """Write ``x[src]`` (quantised), ``y[src]`` and ``t`` into slots ``dst``; returns the slots
        as a tensor on the memory's device."""
        dst_t = torch.as_tensor(dst, device=self.x.device)
        src_t = torch.as_tensor(src, device=x.device)
        self.x[dst_t] = to_uint8(x[src_t]).to(self.x.device)
        self.y[dst_t] = y[src_t].to(self.y.device)
        self.t[dst_t] = t
        return dst_t

    def _draw(self, n: int, held: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` slot indices drawn uniformly, with replacement, from ``[0, held)``."""
        idx = torch.randint(0, held, (n,), generator=generator, device=generator.device if generator else "cpu")
        return idx.to(self.x.device)

    def _batch(self, idx: torch.Tensor, **extras: torch.Tensor) -> ReplayBatch:
        return ReplayBatch(self.x[idx].float().div_(255.0), self.t[idx], self.y[idx], extras or None)

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise checks.fail("n (items to sample)", n, "an integer >= 0", "sample(10)")
        if self.items == 0:
            return None
        return self._batch(self._draw(n, self.items, generator))

    def tasks(self) -> list[int]:
        return sorted(set(self.t[: self.items].tolist()))

    @property
    def storage_bits(self) -> int:
        return self.items * self.item_bits(self.spec)

    def state_dict(self) -> dict:
        # copies: a snapshot stays what it was as the buffer goes on (its counters are copied too)
        return {"x": _snapshot(self.x), "y": self.y.clone(), "t": self.t.clone(), "capacity": self.capacity}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint holds capacity {state['capacity']}, this buffer {self.capacity}")
        self.x.copy_(state["x"])
        self.y.copy_(state["y"])
        self.t.copy_(state["t"])


def _snapshot(v):
    """A copy of a tensor (a composed memory's own store, e.g. coded images, copies itself in its
    ``state_dict``)."""
    return v.clone() if isinstance(v, torch.Tensor) else v
