"""Examples coded with a real image codec (the ``codec`` memory; MRDC, Wang et al., ICLR 2022,
"Memory Replay with Data Compression for Continual Learning", arXiv:2202.06592).

Each example is coded at quality ``q`` by JPEG (default) or WebP through Pillow, or JPEG XL / AVIF
through ``imagecodecs`` (:mod:`memory.coders`). ``storage_bits`` counts, exactly, the coded bytes
of every item held, plus each item's label and task bits (and DER's logits), plus the bytes the
coder keeps once for all items (JPEG's tables and headers). Item sizes vary with content, so the
item count is not fixed: after each write, while the memory is over its budget, it evicts held
items (never the ones just written while others remain) the policy's way: a uniform one for the
reservoir (which then keeps ``capacity`` = items held, so later examples enter with probability
``items / seen``: reservoir sampling at the size the content allows), one of a largest class for
the class-balanced buffer, the oldest of the task for the ring (each task gets ``1 / n_tasks`` of
the budget). When a later write leaves room, the reservoir keeps the item it displaced as well
(its capacity grows back) and the class-balanced buffer opens a slot. Replay decodes only the
items drawn, in one batch; nothing decoded is cached (a cache of every item would be the whole
buffer decoded; ``benchmarks/compressed_replay.py`` measures the decode at ~1 ms per 10 MNIST
items, well inside the 3x of the reservoir's wall time).

Quality: MRDC trades quality for quantity and picks ``q`` by a rule instead of by training at
every ``q``: the most compressed quality whose coded samples keep the feature-space volume (a DPP
kernel's log-determinant) of the originals within ``1 - eps``. ``benchmarks/codec_quality.py``
measures that rule; on MNIST-Rotations at budget 100 (eps 0.05) it picks JPEG quality 20, the
default here (docs/memories.md, "Choosing the quality", has the table and the retained accuracy
measured at each quality). Run it on your own stream and pass ``--set memory.quality=Q``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from memory.base import Memory, MemorySpec, budget_bits
from memory.coders import make_coder
from memory.packed import (
    PackedImages,
    build_policy,
    check_policy,
    compose,
    lead_of,
    policy_extra_bits,
)
from memory.quantized import ring_capacities

CODEC_POLICIES = ("reservoir", "logit_reservoir", "class_balanced", "task_ring")
DEFAULT_QUALITY = 20  # benchmarks/codec_quality.py's pick on MNIST-Rotations, budget 100


class CodedImages(PackedImages):
    """One coded byte string per row (empty: no item); decoding is batched per replay batch."""

    def __init__(self, lead, spec: MemorySpec, coder):
        super().__init__(lead, spec.image_shape, spec.device)
        self.coder = coder
        self.data: list[bytes] = [b""] * int(np.prod(self.lead))

    def encode(self, rows: np.ndarray, images: torch.Tensor) -> None:
        arr = images.numpy()
        for r, im in zip(rows.tolist(), arr, strict=True):
            self.data[r] = self.coder.encode(im)

    def payload(self, rows: np.ndarray) -> list[bytes]:
        return [self.data[r] for r in rows.tolist()]

    def put(self, rows: np.ndarray, payload: list[bytes]) -> None:
        for r, b in zip(rows.tolist(), payload, strict=True):
            self.data[r] = b

    def decode(self, payload: list[bytes]) -> torch.Tensor:
        out = torch.zeros((len(payload), *self.image_shape), dtype=torch.uint8)
        held = [i for i, b in enumerate(payload) if b]  # empty rows (GEM's padding) stay zero
        if held:
            out[held] = self.coder.decode_many([payload[i] for i in held])
        return out.to(self.device).float().div_(255.0)

    def row_bits(self, rows: np.ndarray) -> int:
        return 8 * sum(len(self.data[r]) for r in rows.tolist())

    def state_dict(self) -> dict:
        lengths = np.fromiter((len(b) for b in self.data), np.int64, len(self.data))
        return {"bytes": torch.frombuffer(bytearray(b"".join(self.data) or b"\0"), dtype=torch.uint8).clone(),
                "lengths": torch.from_numpy(lengths)}

    def load(self, state: dict) -> None:
        lengths = state["lengths"].numpy()
        if len(lengths) != len(self.data):
            raise ValueError(f"checkpoint holds {len(lengths)} rows, this memory {len(self.data)}")
        blob = state["bytes"].numpy().tobytes()
        ends = np.cumsum(lengths)
        self.data = [blob[e - n:e] for e, n in zip(ends.tolist(), lengths.tolist(), strict=True)]


class Codec(Memory):
    """Codec-coded examples (JPEG / WebP / JPEG XL / AVIF at quality ``q``) under a buffer policy,
    evicted until the coded bytes fit the budget.

    The policy is one of :mod:`memory.buffers`' and runs unchanged (:mod:`memory.packed`):
    ``reservoir`` (default), ``class_balanced`` (GDumb), ``task_ring`` (GEM / A-GEM),
    ``logit_reservoir`` (DER / DER++). iCaRL's ``herding`` is not served: its exemplar sets are
    fixed counts per class, which a budget in coded bytes cannot promise (use ``quantized``).

    Args:
        spec: The stream's shape.
        budget: Storage budget in effective real examples (``budget * C*H*W*8`` bits).
        codec: ``jpeg``, ``webp``, ``jxl`` or ``avif`` (the last two need ``cl-env[codecs]``).
        quality: 1..100.
        policy: The write policy.
        max_items: Slots the policy gets (default: 32 times the real examples the budget holds);
            the byte budget, not this, normally limits the items.
        seed: Seeds the policy and the evictions.
    """

    name = "codec"
    stackable = True  # reads no model: seeds can be stacked (agents.stacked)

    def __new__(cls, *args, **kwargs):
        if cls is Codec:  # the policy's class (copies and unpickling pass no arguments)
            policy = kwargs.get("policy", args[4] if len(args) > 4 else "reservoir")
            cls = compose(Codec, _codec_policy(policy))
        return super().__new__(cls)

    def __init__(self, spec: MemorySpec, budget: float, codec: str = "jpeg", quality: int = DEFAULT_QUALITY,
                 policy: str = "reservoir", max_items: int | None = None, seed: int = 0):
        _codec_policy(policy)
        coder = make_coder(codec, quality, spec.image_shape)
        self.codec, self.quality, self.policy, self.budget = codec, int(quality), policy, float(budget)
        self.limit = budget_bits(budget, spec)
        self.extra_bits = policy_extra_bits(policy, spec)
        self.shared_bits = 8 * coder.shared_bytes
        floor = self.shared_bits + (self.extra_bits + 8) * (spec.n_tasks if policy == "task_ring" else 1)
        if self.limit < floor:
            need = math.ceil(floor / spec.example_bits * 100) / 100
            raise ValueError(f"codec: a budget of {budget} effective examples ({self.limit} bits) holds no item: "
                             f"{codec} keeps {self.shared_bits} bits once and an item needs {self.extra_bits} bits "
                             f"beside its coded bytes; use --budget {need} or more")
        slots = int(max_items) if max_items is not None else 32 * max(1, int(budget))
        if slots < 1:
            raise ValueError(f"codec: max_items must be >= 1, got {max_items}")
        capacity = ring_capacities(max(slots, spec.n_tasks), spec.n_tasks) if policy == "task_ring" else slots
        build_policy(self, policy, spec, capacity, seed)
        self.x = CodedImages(lead_of(self), spec, coder)
        self.evict_rng = np.random.default_rng(seed + 7)
        self.evictions = 0
        self.max_slots = slots
        self._displaced: tuple | None = None

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> Codec:
        return cls(spec, budget, **kwargs)

    @classmethod
    def default(cls, spec: MemorySpec, policy: str = "reservoir", **kwargs) -> Codec:
        """The bits of the real-example default: 256 examples (256 per task for ``task_ring``)."""
        return cls(spec, 256 * spec.n_tasks if policy == "task_ring" else 256, policy=policy, **kwargs)

    # ------------------------------------------------------------- accounting
    def held_rows(self) -> np.ndarray:
        """Flat store rows of the items held."""
        if self.policy == "task_ring":
            w = self.x.lead[1]
            return np.concatenate([t * w + np.arange(self.task_items(t)) for t in range(self.spec.n_tasks)])
        return np.arange(self.items)

    @property
    def storage_bits(self) -> int:
        return self.shared_bits + self.items * self.extra_bits + self.x.row_bits(self.held_rows())

    # ------------------------------------------------------------- writes, then the budget
    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None, **kwargs) -> None:
        self.x.last_written = np.zeros(0, dtype=np.int64)
        super().observe(x, t, y, ctx, **kwargs)
        if self.policy == "task_ring":
            self._fit_task(int(t))
            return
        self._fit(self.x.last_written)
        self._regrow()

    def _put(self, dst, src, x, y, t):
        """The policy's write, keeping the held items it replaces (reservoir family) so that
        :meth:`_regrow` can keep them too when the budget has room."""
        if self.policy in ("reservoir", "logit_reservoir"):
            dst = np.asarray(dst)
            old = torch.as_tensor([d for d in dst.tolist() if self.x.data[d]], dtype=torch.long)  # held ones
            logits = getattr(self, "logits", None)
            self._displaced = (self.x[old], self.y[old].clone(), self.t[old].clone(),
                               None if logits is None else logits[old].clone())
        return super()._put(dst, src, x, y, t)

    def _regrow(self) -> None:
        """Grow back while the budget has room: the reservoir keeps the items a write displaced
        (appended after the held ones), the class-balanced buffer opens a slot for the next
        example when an average item fits."""
        n = self.items
        if n == 0 or n >= self.max_slots:
            return
        mean = (self.storage_bits - self.shared_bits) / n
        if self.policy == "class_balanced":
            if self.used == self.capacity and self.storage_bits + mean <= self.limit:
                self.capacity += 1
            return
        if self._displaced is None:
            return
        rows, y, t, logits = self._displaced
        self._displaced = None
        for i, b in enumerate(rows.payload):
            n = self.items
            if n >= self.max_slots or self.storage_bits + 8 * len(b) + self.extra_bits > self.limit:
                break
            self.x.put(np.array([n]), [b])
            self.y[n], self.t[n] = y[i], t[i]
            if logits is not None:
                self.logits[n] = logits[i]
            self.capacity = n + 1

    def _too_small(self, bits: int) -> ValueError:
        need = math.ceil((bits * (self.spec.n_tasks if self.policy == "task_ring" else 1) + self.shared_bits)
                         / self.spec.example_bits * 100) / 100
        return ValueError(f"codec: the budget ({self.budget} effective examples, {self.limit} bits) is too small "
                          f"for one item: an item coded by {self.codec} at quality {self.quality} takes {bits} bits "
                          f"(+ {self.shared_bits} shared); use --budget {need} or more, or a lower memory.quality")

    def _fit(self, protect: np.ndarray) -> None:
        while self.storage_bits > self.limit:
            n = self.items
            if n <= 1:
                raise self._too_small(self.storage_bits - self.shared_bits)
            pool = np.setdiff1d(np.arange(n), protect)
            if len(pool) == 0:  # the batch alone is over: drop its oldest
                pool = np.sort(protect)[:1]
                protect = protect[protect != pool[0]]
            k = self._victim(pool)
            self._evict(k, n)
            protect = np.where(protect == n - 1, k, protect)  # the last item moved into slot k

    def _victim(self, pool: np.ndarray) -> int:
        if self.policy == "class_balanced":  # GDumb's rule: an item of a largest class
            counts = np.bincount(self.labels[pool], minlength=self.spec.n_classes)
            pool = pool[counts[self.labels[pool]] == counts.max()]
        return int(pool[self.evict_rng.integers(len(pool))])

    def _evict(self, k: int, n: int) -> None:
        """Drop slot ``k`` of ``n`` held: the last held item moves into it, the policy shrinks by one."""
        last = n - 1
        if self.policy == "class_balanced":
            self.counts[self.labels[k]] -= 1
            self.labels[k] = self.labels[last]
            self.labels[last] = -1
            self.used = last
        if k != last:
            self.x[k] = self.x[last]
            for name in ("y", "t", "logits"):
                buf = getattr(self, name, None)
                if buf is not None:
                    buf[k] = buf[last]
        self.x.data[last] = b""
        self.capacity = last
        self.evictions += 1

    def padded(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ring's :meth:`padded` (GEM's per-task gradients) over the items held, not the
        slots: the ring's slots are sized for ``max_items``, so only the held rows are decoded,
        in one batch, into ``(T, most items of a task, C, H, W)``."""
        w = self.x.lead[1]
        counts = [self.task_items(t) for t in tasks]
        width = max(counts, default=0)
        rows = np.concatenate([t * w + np.arange(k) for t, k in zip(tasks, counts, strict=True)]).astype(np.int64)
        x = self.x.decode(self.x.payload(rows))
        dev = x.device
        xs = x.new_zeros(len(tasks), width, *self.spec.image_shape)
        ys = torch.zeros(len(tasks), width, dtype=self.y.dtype, device=dev)
        ws = torch.zeros(len(tasks), width, device=dev)
        start = 0
        for i, (t, k) in enumerate(zip(tasks, counts, strict=True)):
            xs[i, :k], ys[i, :k], ws[i, :k] = x[start:start + k], self.y[t, :k].to(dev), 1.0
            start += k
        return xs, ys, ws

    def _fit_task(self, t: int) -> None:
        """The ring of task ``t`` within ``1 / n_tasks`` of the budget: drop its oldest items."""
        share = (self.limit - self.shared_bits) / self.spec.n_tasks
        w = self.x.lead[1]
        while True:
            k = self.task_items(t)
            rows = t * w + np.arange(k)
            if self.x.row_bits(rows) + k * self.extra_bits <= share:
                return
            if k <= 1:
                raise self._too_small(self.x.row_bits(rows) + self.extra_bits)
            cap, count = int(self.caps[t]), int(self.count[t])
            order = (np.arange(k) + (count % cap if count >= cap else 0)) % cap  # oldest first
            keep = torch.as_tensor(order[1:])
            self.x[t, :k - 1] = self.x[t, keep].clone()
            self.y[t, :k - 1] = self.y[t, keep].clone()
            self.x.data[t * w + k - 1] = b""
            self.caps[t] = self.count[t] = k - 1  # a full ring again: the next write replaces the oldest
            self.evictions += 1

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "x": self.x.state_dict(), "evictions": self.evictions,
                 "evict_rng": self.evict_rng.bit_generator.state}
        if self.policy == "task_ring":
            state["caps"] = self.caps.copy()
        else:
            state["capacity"] = self.capacity
        return state

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if self.policy == "task_ring":
            self.caps = np.asarray(state["caps"]).copy()
        else:
            self.capacity = int(state["capacity"])
        super().load_state_dict(state, ctx)
        self.evictions = int(state["evictions"])
        self.evict_rng.bit_generator.state = state["evict_rng"]


def _codec_policy(policy: str) -> str:
    check_policy(policy, "codec")
    if policy not in CODEC_POLICIES:
        raise ValueError(f"codec: policy {policy!r} is not served (herding keeps fixed counts per class, "
                         f"which a budget in coded bytes cannot promise); choose one of {list(CODEC_POLICIES)} "
                         f"or use --memory quantized")
    return policy
