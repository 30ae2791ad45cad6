"""Reservoir sampling over the whole stream: experience replay's buffer and DER's, which also keeps
each item's logits.

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and each task id at
``ceil(log2 n_tasks)`` bits (and, for :class:`LogitReservoir`, 32 bits per logit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from memory.base import MemorySpec, ReplayBatch
from memory.buffers.slots import SlotBuffer, reservoir_slots


class ReservoirBuffer(SlotBuffer):
    """Reservoir sampling over the whole stream (Vitter 1985; ER of Chaudhry et al. 2019).

    Every example seen so far has the same chance ``capacity / n_seen`` of being held.

    Args:
        spec: The stream's shape.
        capacity: Items held at most.
        seed: Seeds the write policy (which examples are kept).
    """

    name = "reservoir"
    stackable = True  # reads no model: seeds can be stacked (agents.stacked)

    def __init__(self, spec: MemorySpec, capacity: int, seed: int = 0):
        super().__init__(spec, capacity)
        self.n_seen = 0
        self.rng = np.random.default_rng(seed)

    def _slots(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        src, dst = reservoir_slots(self.n_seen, b, self.capacity, self.rng)
        self.n_seen += b
        return src, dst

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None) -> None:
        src, dst = self._slots(len(x))
        if len(src):
            self._put(dst, src, x, y, t)

    @property
    def items(self) -> int:
        return min(self.n_seen, self.capacity)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "n_seen": self.n_seen, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        super().load_state_dict(state, ctx)
        self.n_seen = int(state["n_seen"])
        self.rng.bit_generator.state = state["rng"]


class LogitReservoir(ReservoirBuffer):
    """A reservoir that also keeps each item's logits as the model gave them when it was written
    (DER and DER++, Buzzega et al. 2020, §3: "we sample ... the network's logits").

    Storage per item: the example, its label and task id (as :class:`ReservoirBuffer`) plus
    ``32 * n_classes`` bits of float32 logits. :meth:`sample` returns the logits as
    ``extras["logits"]``.

    Args:
        spec: The stream's shape.
        capacity: Items held at most.
        seed: Seeds the write policy.
    """

    name = "logit_reservoir"
    stackable = True  # reads no model (the logits are handed to observe): seeds can be stacked

    def __init__(self, spec: MemorySpec, capacity: int, seed: int = 0):
        super().__init__(spec, capacity, seed)
        self.logits = torch.zeros(self.capacity, spec.n_classes, device=spec.device)

    @classmethod
    def item_bits(cls, spec: MemorySpec) -> int:
        return super().item_bits(spec) + 32 * spec.n_classes

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None,
                logits: torch.Tensor | None = None) -> None:
        """Write by reservoir sampling; ``logits`` (``(B, n_classes)``) are required."""
        if logits is None:
            raise ValueError("logit_reservoir stores the model's logits: call observe(..., logits=...)")
        src, dst = self._slots(len(x))
        if len(src):
            dst_t = self._put(dst, src, x, y, t)
            self.logits[dst_t] = logits[torch.as_tensor(src, device=logits.device)].detach().float().to(self.logits.device)

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        if self.items == 0:
            return None
        idx = self._draw(n, self.items, generator)
        return self._batch(idx, logits=self.logits[idx])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "logits": self.logits}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        super().load_state_dict(state, ctx)
        self.logits.copy_(state["logits"])
