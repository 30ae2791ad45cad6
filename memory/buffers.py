"""Buffers of real examples: a reservoir (experience replay) and GEM's per-task ring buffer.

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and, for the reservoir, each task id
at ``ceil(log2 n_tasks)`` bits. The ring buffer needs no task ids: the slot says the task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

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
        if self.items == 0:
            return None
        return self._batch(self._draw(n, self.items, generator))

    def tasks(self) -> list[int]:
        return sorted(set(self.t[: self.items].tolist()))

    @property
    def storage_bits(self) -> int:
        return self.items * self.item_bits(self.spec)

    def state_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "t": self.t, "capacity": self.capacity}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint holds capacity {state['capacity']}, this buffer {self.capacity}")
        self.x.copy_(state["x"])
        self.y.copy_(state["y"])
        self.t.copy_(state["t"])


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
        return {"x": self.x, "y": self.y, "count": self.count.copy(), "caps": self.caps.copy()}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if not np.array_equal(state["caps"], self.caps):
            raise ValueError("checkpoint's per-task capacities differ from this buffer's")
        self.x.copy_(state["x"])
        self.y.copy_(state["y"])
        self.count = np.asarray(state["count"]).copy()


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
