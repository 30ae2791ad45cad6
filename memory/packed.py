"""Compressed pixels under the real-example buffers' write policies (shared by ``quantized`` and
``codec``).

The policies of :mod:`memory.buffers` (reservoir, DER's logit reservoir, GDumb's class-balanced
sampler, GEM's per-task ring, iCaRL's herding sets) keep their images in one ``uint8`` tensor
``x`` and touch it in four ways only: ``x[slots] = uint8 images`` (a write), ``x[slots].float()``
(a read, then ``/ 255``), ``x[dst] = x[src].clone()`` (compaction) and ``x.device``. A
:class:`PackedImages` store answers the same four with coded images: a write *encodes*, a read
*decodes only the rows asked for* (the replay batch, never the whole buffer), a move copies the
coded payload untouched (no generation loss). So a compressed memory is the policy class itself,
its pixel tensor replaced by a store (:func:`compose`): the policy code is written once.

Each store keeps a ``lead`` grid of rows (``(capacity,)`` for the slot buffers,
``(n_tasks, width)`` for the ring); any index the policies use (ints, slices, index tensors,
tuples of them) selects rows of that grid.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch

from memory.base import MemorySpec
from memory.buffers import (
    ClassBalancedBuffer,
    HerdingExemplars,
    LogitReservoir,
    ReservoirBuffer,
    TaskRingBuffer,
)

POLICIES: dict[str, type] = {
    "reservoir": ReservoirBuffer,
    "class_balanced": ClassBalancedBuffer,
    "task_ring": TaskRingBuffer,
    "logit_reservoir": LogitReservoir,
    "herding": HerdingExemplars,
}


class Rows:
    """Coded rows taken out of a :class:`PackedImages` (what ``store[index]`` returns).

    ``.float()`` decodes them (on the 0-255 scale, as a ``uint8`` tensor's ``.float()`` would be),
    ``.clone()`` keeps the coded payload for a move, ``len()`` counts them.
    """

    def __init__(self, store: PackedImages, shape: tuple[int, ...], payload: Any):
        self.store, self.shape, self.payload = store, shape, payload

    def float(self) -> torch.Tensor:
        x = self.store.decode(self.payload)
        return x.mul_(255.0).reshape(*self.shape, *x.shape[1:])

    def clone(self) -> Rows:
        return self

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1


class PackedImages(ABC):
    """A grid of coded images standing in for a policy's ``uint8`` pixel tensor.

    Args:
        lead: The grid of rows (the leading dimensions of the tensor it replaces).
        image_shape: ``(C, H, W)`` of the decoded images.
        device: Where decoded batches are put.
    """

    def __init__(self, lead: tuple[int, ...], image_shape: tuple[int, int, int], device: str | torch.device):
        self.lead, self.image_shape = tuple(int(v) for v in lead), tuple(image_shape)
        self.grid = np.arange(int(np.prod(self.lead)), dtype=np.int64).reshape(self.lead)
        self.device = torch.device(device)
        self.last_written = np.zeros(0, dtype=np.int64)  # flat rows of the latest write

    # ------------------------------------------------------------- what a coder implements
    @abstractmethod
    def encode(self, rows: np.ndarray, images: torch.Tensor) -> None:
        """Code ``images`` (``uint8 (n, C, H, W)``) into the flat ``rows``."""

    @abstractmethod
    def payload(self, rows: np.ndarray) -> Any:
        """The coded contents of flat ``rows`` (a snapshot: later writes do not change it)."""

    @abstractmethod
    def put(self, rows: np.ndarray, payload: Any) -> None:
        """Write a :meth:`payload` into flat ``rows``, unchanged."""

    @abstractmethod
    def decode(self, payload: Any) -> torch.Tensor:
        """A payload's images, float32 ``(n, C, H, W)`` in [0, 1] on :attr:`device`."""

    @abstractmethod
    def row_bits(self, rows: np.ndarray) -> int:
        """Bits the flat ``rows`` hold (their coded pixels only)."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Tensors and plain containers only."""

    @abstractmethod
    def load(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""

    # ------------------------------------------------------------- the tensor-like face
    def rows(self, key) -> np.ndarray:
        """The grid rows an index selects, in its shape."""
        if isinstance(key, tuple):
            key = tuple(k.cpu().numpy() if isinstance(k, torch.Tensor) else k for k in key)
        elif isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        return np.asarray(self.grid[key])

    def __getitem__(self, key) -> Rows:
        rows = self.rows(key)
        return Rows(self, rows.shape, self.payload(rows.ravel()))

    def __setitem__(self, key, value) -> None:
        rows = self.rows(key)
        flat = rows.ravel()
        if isinstance(value, Rows):
            self.put(flat, value.payload)
            return
        images = value.reshape(-1, *self.image_shape)
        if len(images) != len(flat):  # a broadcast write (the policies never do one)
            raise ValueError(f"{len(images)} images for {len(flat)} rows")
        # the policies never write a row twice in one call (reservoir_slots resolves ties first)
        self.encode(flat, images.detach().to("cpu", torch.uint8))
        self.last_written = flat.copy()

    def copy_(self, state: dict) -> PackedImages:
        """Load a :meth:`state_dict` (the policies restore ``x`` with ``x.copy_(state["x"])``)."""
        self.load(state)
        return self


def zero_pixel(spec: MemorySpec) -> MemorySpec:
    """``spec`` with images of no pixels: a policy built on it allocates no pixel tensor (its ``x``
    is then replaced by a store)."""
    return dataclasses.replace(spec, image_shape=(0, 0, 0))


def policy_extra_bits(policy: str, spec: MemorySpec) -> int:
    """Bits an item costs under ``policy`` beside its pixels: its label, its task id (the ring's
    slot says the task) and DER's float32 logits."""
    base = POLICIES[policy]
    return base.item_bits(spec) - spec.example_bits


def check_policy(policy: str, memory: str) -> type:
    if policy not in POLICIES:
        raise ValueError(f"{memory}: unknown policy {policy!r}; choose one of {sorted(POLICIES)} "
                         f"(--set memory.policy=NAME)")
    return POLICIES[policy]


def build_policy(obj, policy: str, spec: MemorySpec, capacity: int | list[int], seed: int) -> None:
    """Run ``policy``'s own constructor on ``obj`` for a zero-pixel image (its slots, labels,
    counters and random state), then restore the real ``spec``."""
    base = POLICIES[policy]
    flat = zero_pixel(spec)
    if base is TaskRingBuffer:
        base.__init__(obj, flat, capacity)
    else:
        base.__init__(obj, flat, capacity, seed)
    obj.spec = spec


def lead_of(obj) -> tuple[int, ...]:
    """The row grid of a policy built by :func:`build_policy` (its ``x`` tensor's leading dims)."""
    return tuple(obj.x.shape[: obj.x.dim() - 3])


_CLASSES: dict[tuple[type, str], type] = {}


def compose(mixin: type, policy: str) -> type:
    """The class ``mixin`` + ``policy`` (one per pair, made once): the mixin's methods first, then
    the policy's. ``mixin.__new__`` uses it to return the right class for ``policy=``."""
    key = (mixin, policy)
    if key not in _CLASSES:
        base = POLICIES[policy]
        name = f"{mixin.__name__}{base.__name__}"
        # stackable (agents.stacked): the coded buffers never read the model, as their policies
        cls = type(name, (mixin, base), {"__module__": mixin.__module__, "__doc__": mixin.__doc__,
                                         "name": mixin.name, "stackable": True})
        _CLASSES[key] = cls
    return _CLASSES[key]
