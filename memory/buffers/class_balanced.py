"""GDumb's class-balanced buffer of real examples (Prabhu et al. 2020).

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and each task id at
``ceil(log2 n_tasks)`` bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from memory.base import MemorySpec, ReplayBatch
from memory.buffers.slots import SlotBuffer


def balanced_slot(counts: np.ndarray, label: int, capacity: int, used: int,
                  rng: np.random.Generator, slots_of) -> int | None:
    """GDumb's greedy class-balancing sampler (Prabhu et al. 2020, Algorithm 1) for one example.

    With a free slot the example is stored. Otherwise, if its class holds fewer than
    ``capacity / classes seen`` items (the classes seen counting this one), a uniformly chosen item
    of a largest class is evicted for it; else it is not stored.

    Args:
        counts: Items held per class (updated by the caller).
        label: The example's class.
        capacity: Items the memory holds at most.
        used: Items held now.
        rng: Draws the evicted item.
        slots_of: ``class -> array of the slots holding it``.

    Returns:
        The slot to write, or None.
    """
    if used < capacity:
        return used
    seen = int((counts > 0).sum()) + (counts[label] == 0)
    if counts[label] >= capacity / seen:
        return None
    largest = np.flatnonzero(counts == counts.max())
    victim_class = int(largest[rng.integers(len(largest))])
    slots = slots_of(victim_class)
    return int(slots[rng.integers(len(slots))])


class ClassBalancedBuffer(SlotBuffer):
    """GDumb's memory: examples kept by the greedy class-balancing sampler (:func:`balanced_slot`),
    so that every class seen holds about ``capacity / classes seen`` items. Storage per item: the
    example, its label and its task id.

    Args:
        spec: The stream's shape.
        capacity: Items held at most.
        seed: Seeds the evictions.
    """

    name = "class_balanced"

    def __init__(self, spec: MemorySpec, capacity: int, seed: int = 0):
        super().__init__(spec, capacity)
        self.labels = np.full(self.capacity, -1, dtype=np.int64)  # host copy of y for the sampler
        self.counts = np.zeros(spec.n_classes, dtype=np.int64)
        self.used = 0
        self.rng = np.random.default_rng(seed)

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None) -> None:
        if self.capacity == 0:
            return
        labels = y.detach().cpu().numpy()
        src, dst = [], []
        for i, label in enumerate(labels):  # sequential by definition: each decision sees the last
            slot = balanced_slot(self.counts, int(label), self.capacity, self.used, self.rng,
                                 lambda c: np.flatnonzero(self.labels == c))
            if slot is None:
                continue
            if slot == self.used:
                self.used += 1
            else:
                self.counts[self.labels[slot]] -= 1
            self.labels[slot] = label
            self.counts[label] += 1
            if slot in dst:  # written twice in this batch: the later example wins
                src[dst.index(slot)] = i
            else:
                src.append(i)
                dst.append(slot)
        if src:
            self._put(dst, src, x, y, t)

    def all(self) -> ReplayBatch | None:
        """Every item held, in slot order."""
        if self.used == 0:
            return None
        return self._batch(torch.arange(self.used, device=self.x.device))

    @property
    def items(self) -> int:
        return self.used

    def state_dict(self) -> dict:
        return {**super().state_dict(), "labels": self.labels.copy(), "counts": self.counts.copy(),
                "used": self.used, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        super().load_state_dict(state, ctx)
        self.labels = np.asarray(state["labels"]).copy()
        self.counts = np.asarray(state["counts"]).copy()
        self.used = int(state["used"])
        self.rng.bit_generator.state = state["rng"]
