"""iCaRL's exemplar sets chosen by herding (Rebuffi et al. 2017).

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and each task id at
``ceil(log2 n_tasks)`` bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from memory.base import MemorySpec, ReplayBatch
from memory.buffers.slots import SlotBuffer, reservoir_slots


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL's herding (Rebuffi et al. 2017, Algorithm 4): ``m`` indices, in order, whose running
    mean best approximates the class mean of the L2-normalised features.

    ``p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||``, each example chosen once.
    """
    phi = torch.nn.functional.normalize(features.float(), dim=1)
    mu = phi.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    free = torch.ones(len(phi), dtype=torch.bool, device=phi.device)
    for k in range(1, min(m, len(phi)) + 1):
        dist = (mu.unsqueeze(0) - (total.unsqueeze(0) + phi) / k).norm(dim=1)
        dist[~free] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        free[i] = False
        total += phi[i]
    return torch.tensor(chosen, dtype=torch.long)


class HerdingExemplars(SlotBuffer):
    """iCaRL's exemplar sets within one fixed capacity ``K`` (Rebuffi et al. 2017, Algorithms 4-5).

    Each class seen keeps ``m = K // classes seen`` exemplars in herding order (a class met in
    several tasks keeps one such set per task); a new task first
    shrinks the old sets to the ``m`` its classes leave (:meth:`begin_task`, Algorithm 5: keep the
    first ``m``), and the space freed is split evenly among the new classes, each share holding by
    reservoir sampling candidates among that class's examples; at the task's end herding over each
    new class's candidates picks and orders its ``m`` exemplars (:meth:`select`). The paper herds
    over a task's whole training set; in a one-pass stream the candidates are what the freed space
    could hold, so that the memory never stores more than ``K`` items (storage counts candidates as
    well as exemplars).

    Args:
        spec: The stream's shape.
        capacity: ``K``, items held at most.
        seed: Seeds the candidates' reservoir.
    """

    name = "herding"

    def __init__(self, spec: MemorySpec, capacity: int, seed: int = 0):
        super().__init__(spec, capacity)
        self.rank = torch.full((self.capacity,), -1, dtype=torch.int64)  # herding rank; -1: candidate
        self.n_exemplars = 0  # slots [0, n_exemplars) hold exemplars, then one block per new class
        self.new_classes: list[int] = []
        self.cand_cap = 0  # candidate slots per new class
        self.cand_seen_c = np.zeros(0, dtype=np.int64)
        self.units: list[tuple[int, int]] = []  # (task, class) of each exemplar set, in order
        self.cand_task = 0
        self.classes_seen: list[int] = []
        self.rng = np.random.default_rng(seed)

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> HerdingExemplars:
        return cls(spec, 2000, **kwargs)  # iCaRL's K on CIFAR-100

    def per_class(self, n_classes: int) -> int:
        return self.capacity // max(1, n_classes)

    def _compact(self, keep: torch.Tensor) -> None:
        idx = torch.nonzero(keep).flatten()
        n = len(idx)
        for buf in (self.x, self.y, self.t):
            buf[:n] = buf[idx.to(buf.device)].clone()
        self.rank[:n] = self.rank[idx].clone()
        self.rank[n:] = -1

    def begin_task(self, new_classes: list[int] | tuple[int, ...], t: int = 0) -> None:
        """Shrink the old exemplar sets to ``K // (old + new sets)`` each (their first in herding
        order) and split the freed space evenly among the new classes' candidates. A set is one
        (task, class) pair, so a class met again in a later task (domain-incremental streams)
        gets a set of its own beside the old one."""
        new = [int(c) for c in dict.fromkeys(int(c) for c in new_classes)]
        self.units = [*self.units, *[(int(t), c) for c in new]]
        m = self.per_class(len(self.units))
        n = self.n_exemplars
        keep = torch.zeros(self.capacity, dtype=torch.bool)
        keep[:n] = self.rank[:n] < m
        self._compact(keep)
        self.n_exemplars = int(keep.sum())
        self.new_classes = new
        self.cand_cap = (self.capacity - self.n_exemplars) // max(1, len(new))
        self.cand_seen_c = np.zeros(len(new), dtype=np.int64)
        self.classes_seen = list(dict.fromkeys(c for _, c in self.units))

    @property
    def n_candidates(self) -> int:
        return int(np.minimum(self.cand_seen_c, self.cand_cap).sum()) if len(self.cand_seen_c) else 0

    def _block(self, i: int) -> int:
        return self.n_exemplars + i * self.cand_cap

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None) -> None:
        """Reservoir sampling of each new class's examples into its share of the free slots."""
        self.cand_task = int(t)
        labels = y.detach().cpu()
        for i, c in enumerate(self.new_classes):
            rows = torch.nonzero(labels == c).flatten()
            if len(rows) == 0 or self.cand_cap == 0:
                self.cand_seen_c[i] += len(rows)
                continue
            src, dst = reservoir_slots(int(self.cand_seen_c[i]), len(rows), self.cand_cap, self.rng)
            self.cand_seen_c[i] += len(rows)
            if len(src):
                self._put(dst + self._block(i), rows[torch.from_numpy(src)], x, y, t)

    def select(self, features) -> None:
        """End of a task: herding (``features``: float images -> feature vectors) over each new
        class's candidates picks its ``K // sets`` exemplars, in order; the rest are freed."""
        m = self.per_class(len(self.units))
        keep = torch.zeros(self.capacity, dtype=torch.bool)
        keep[:self.n_exemplars] = True
        for i, _c in enumerate(self.new_classes):
            k = int(min(self.cand_seen_c[i], self.cand_cap))
            if k == 0:
                continue
            lo = self._block(i)
            with torch.no_grad():
                feats = features(self.x[lo:lo + k].float().div(255.0))
            order = herding_order(feats, m)
            chosen = lo + order
            keep[chosen] = True
            self.rank[chosen] = torch.arange(len(order))
        self._compact(keep)
        self.n_exemplars = int(keep.sum())
        self.new_classes, self.cand_cap = [], 0
        self.cand_seen_c = np.zeros(0, dtype=np.int64)

    def exemplars(self) -> ReplayBatch | None:
        """Every exemplar (candidates excluded)."""
        if self.n_exemplars == 0:
            return None
        return self._batch(torch.arange(self.n_exemplars, device=self.x.device))

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        """``n`` exemplars drawn with replacement (the current task's candidates are not replayed)."""
        if self.n_exemplars == 0:
            return None
        return self._batch(self._draw(n, self.n_exemplars, generator))

    def tasks(self) -> list[int]:
        """Tasks of the exemplars, and the current task while it has candidates (they sit in
        per-class blocks with gaps, so the slots past the exemplars are not all written)."""
        held = set(self.t[: self.n_exemplars].tolist())
        return sorted(held | ({self.cand_task} if self.n_candidates else set()))

    @property
    def items(self) -> int:
        return self.n_exemplars + self.n_candidates

    def state_dict(self) -> dict:
        return {**super().state_dict(), "rank": self.rank, "n_exemplars": self.n_exemplars,
                "new_classes": list(self.new_classes), "cand_cap": self.cand_cap,
                "cand_seen_c": self.cand_seen_c.copy(), "classes_seen": list(self.classes_seen),
                "units": [list(u) for u in self.units], "cand_task": self.cand_task,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        super().load_state_dict(state, ctx)
        self.rank.copy_(state["rank"])
        self.n_exemplars, self.cand_cap = int(state["n_exemplars"]), int(state["cand_cap"])
        self.new_classes = [int(c) for c in state["new_classes"]]
        self.cand_seen_c = np.asarray(state["cand_seen_c"]).copy()
        self.classes_seen = [int(c) for c in state["classes_seen"]]
        self.units = [(int(a), int(b)) for a, b in state["units"]]
        self.cand_task = int(state["cand_task"])
        self.rng.bit_generator.state = state["rng"]
