"""Real examples at fewer bits per pixel and/or a lower resolution (the ``quantized`` memory).

An image is stored at ``1 / scale`` of its resolution (each ``scale x scale`` block averaged,
every channel on its own) and each stored value at ``bits`` bits: the uniform quantiser with
``2 ** bits`` levels over [0, 1], ``q = round(v * (2 ** bits - 1))``. At replay the levels are
mapped back (``q / (2 ** bits - 1)``) and the image restored to full size by bilinear
interpolation (``mode``). The codes are bit-packed, row after row, in a
:class:`memory.bitstore.BitStore`: ``storage_bits`` is what is held,

    items x (C x (H / scale) x (W / scale) x bits + label bits + task bits)

(the ring buffer's slot says the task: no task bits there; DER's logit reservoir adds its
``32 x n_classes`` bits of float32 logits). ``bits = 8, scale = 1`` is exactly the real-example
buffer. With ``for_budget`` the memory holds as many items as the budget pays for.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from memory.base import Memory, MemorySpec, budget_bits
from memory.bitstore import BitStore
from memory.packed import (
    PackedImages,
    build_policy,
    check_policy,
    compose,
    lead_of,
    policy_extra_bits,
)

MODES = ("bilinear", "bicubic", "nearest")


def check_quantizer(spec: MemorySpec, bits: int, scale: int, mode: str = "bilinear") -> None:
    """One clear error for a ``bits``/``scale``/``mode`` the images cannot take."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= 8:
        raise ValueError(f"quantized: bits must be an integer in 1..8 (bits per stored value), got {bits!r}")
    _, h, w = spec.image_shape
    if isinstance(scale, bool) or not isinstance(scale, int | np.integer) or scale < 1:
        raise ValueError(f"quantized: scale must be a positive integer (1 = full resolution), got {scale!r}")
    if h % scale or w % scale:
        ok = [s for s in range(1, min(h, w) + 1) if h % s == 0 and w % s == 0]
        raise ValueError(f"quantized: scale {scale} does not divide the {h}x{w} images; "
                         f"use one of {ok} (--set memory.scale=N)")
    if mode not in MODES:
        raise ValueError(f"quantized: mode must be one of {MODES}, got {mode!r}")


def payload_bits(spec: MemorySpec, bits: int, scale: int) -> int:
    """Bits of one stored image: ``C * (H / scale) * (W / scale) * bits``."""
    c, h, w = spec.image_shape
    return c * (h // scale) * (w // scale) * bits


def quantize(images: torch.Tensor, bits: int, scale: int) -> np.ndarray:
    """``uint8 (n, C, H, W)`` -> levels ``(n, C * H/scale * W/scale)`` in ``[0, 2**bits)``."""
    x = images.float().div_(255.0)
    if scale > 1:
        x = F.avg_pool2d(x, scale)
    levels = torch.round(x * (2 ** bits - 1)).clamp_(0, 2 ** bits - 1)
    return levels.to(torch.uint8).reshape(len(images), -1).numpy()


def dequantize(levels: np.ndarray, shape: tuple[int, int, int], bits: int, scale: int,
               mode: str = "bilinear") -> torch.Tensor:
    """Levels -> float images ``(n, C, H, W)`` in [0, 1], restored to full size by ``mode``."""
    c, h, w = shape
    x = torch.from_numpy(np.ascontiguousarray(levels, dtype=np.float32)).div_(2 ** bits - 1)
    x = x.reshape(len(levels), c, h // scale, w // scale)
    if scale > 1:
        kw = {} if mode == "nearest" else {"align_corners": False}
        x = F.interpolate(x, size=(h, w), mode=mode, **kw).clamp_(0.0, 1.0)
    return x


class QuantizedImages(PackedImages):
    """Images as bit-packed quantiser levels: one :class:`BitStore` row per image."""

    def __init__(self, lead, spec: MemorySpec, bits: int, scale: int, mode: str):
        super().__init__(lead, spec.image_shape, spec.device)
        self.bits, self.scale, self.mode = int(bits), int(scale), mode
        self.width = payload_bits(spec, bits, scale) // bits
        self.store = BitStore(int(np.prod(self.lead)), [self.bits] * self.width)

    def encode(self, rows: np.ndarray, images: torch.Tensor) -> None:
        self.store.write(rows, quantize(images, self.bits, self.scale))

    def payload(self, rows: np.ndarray) -> np.ndarray:
        return self.store.read(rows).astype(np.uint8)

    def put(self, rows: np.ndarray, payload: np.ndarray) -> None:
        self.store.write(rows, payload)

    def decode(self, payload: np.ndarray) -> torch.Tensor:
        return dequantize(payload, self.image_shape, self.bits, self.scale, self.mode).to(self.device)

    def row_bits(self, rows: np.ndarray) -> int:
        return len(rows) * self.width * self.bits

    def state_dict(self) -> dict:
        return {"data": torch.from_numpy(self.store.data.copy())}

    def load(self, state: dict) -> None:
        data = state["data"].numpy()
        if data.shape != self.store.data.shape:
            raise ValueError(f"checkpoint holds {data.shape[0]} packed bytes, this memory {self.store.data.shape[0]}")
        self.store.data[:] = data


def ring_capacities(total: int, n_tasks: int) -> list[int]:
    """``total`` items spread over the tasks, the first tasks taking the remainder (as
    ``task_ring.for_budget``)."""
    base, extra = divmod(int(total), n_tasks)
    return [base + (i < extra) for i in range(n_tasks)]


class Quantized(Memory):
    """Examples at ``bits`` bits per value and ``1/scale`` resolution under a buffer policy.

    The policy is one of :mod:`memory.buffers`' (``reservoir`` by default; ``class_balanced``
    (GDumb), ``task_ring`` (GEM / A-GEM per-task sampling), ``logit_reservoir`` (DER / DER++:
    logits kept and counted), ``herding`` (iCaRL: herding runs on the decoded items)), used
    unchanged: ``Quantized(spec, capacity, policy=...)`` returns that policy's class with its
    pixel tensor replaced by bit-packed codes (:mod:`memory.packed`). A replay batch decodes only
    the items drawn.

    Args:
        spec: The stream's shape.
        capacity: Items held at most (a list per task for ``task_ring``).
        bits: Bits per stored value, 1..8 (4).
        scale: Stored at ``1/scale`` resolution (must divide H and W), restored by ``mode`` (2).
            The defaults hold 8x the real examples; on MNIST-Rotations at budget 100 the sweep in
            docs/memories.md found ``bits=1, scale=2`` best (binary digits), but 4 bits at half
            resolution keep colour images usable too.
        mode: Interpolation at replay: ``bilinear``, ``bicubic`` or ``nearest``.
        policy: The write policy.
        seed: Seeds the policy.
    """

    name = "quantized"
    stackable = True  # reads no model: seeds can be stacked (agents.stacked)

    def __new__(cls, *args, **kwargs):
        if cls is Quantized:  # the policy's class (copies and unpickling pass no arguments)
            policy = kwargs.get("policy", args[5] if len(args) > 5 else "reservoir")
            check_policy(policy, "quantized")
            cls = compose(Quantized, policy)
        return super().__new__(cls)

    def __init__(self, spec: MemorySpec, capacity, bits: int = 4, scale: int = 2, mode: str = "bilinear",
                 policy: str = "reservoir", seed: int = 0):
        check_quantizer(spec, bits, scale, mode)
        self.bits, self.scale, self.mode, self.policy = int(bits), int(scale), mode, policy
        build_policy(self, policy, spec, capacity, seed)
        self.x = QuantizedImages(lead_of(self), spec, self.bits, self.scale, mode)

    @classmethod
    def item_bits_for(cls, spec: MemorySpec, bits: int, scale: int, policy: str) -> int:
        """Bits of one item: its packed pixels plus what the policy keeps beside them."""
        return payload_bits(spec, bits, scale) + policy_extra_bits(policy, spec)

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, bits: int = 4, scale: int = 2,
                   policy: str = "reservoir", **kwargs) -> Quantized:
        """As many items as ``budget`` effective examples pay for at ``bits`` / ``scale``."""
        check_policy(policy, "quantized")
        check_quantizer(spec, bits, scale, kwargs.get("mode", "bilinear"))
        total_bits = budget_bits(budget, spec)
        item = cls.item_bits_for(spec, bits, scale, policy)
        items = total_bits // item
        if items < (spec.n_tasks if policy == "task_ring" else 1):
            need = math.ceil(item * (spec.n_tasks if policy == "task_ring" else 1) / spec.example_bits * 100) / 100
            raise ValueError(f"quantized: a budget of {budget} effective examples ({total_bits} bits) holds no item "
                             f"of {item} bits (bits={bits}, scale={scale}, policy={policy}); "
                             f"use --budget {need} or more, or fewer bits / a larger scale")
        capacity = ring_capacities(items, spec.n_tasks) if policy == "task_ring" else int(items)
        return cls(spec, capacity, bits=bits, scale=scale, policy=policy, **kwargs)

    @classmethod
    def default(cls, spec: MemorySpec, policy: str = "reservoir", **kwargs) -> Quantized:
        """The bits of the real-example default: 256 examples (256 per task for ``task_ring``,
        GEM's protocol), as many quantised items as they pay for."""
        n = 256 * spec.n_tasks if policy == "task_ring" else 256
        return cls.for_budget(n, spec, policy=policy, **kwargs)

    @property
    def item_bits_now(self) -> int:
        return self.item_bits_for(self.spec, self.bits, self.scale, self.policy)

    @property
    def storage_bits(self) -> int:
        return self.items * self.item_bits_now

    def state_dict(self) -> dict:
        return {**super().state_dict(), "x": self.x.state_dict()}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        super().load_state_dict(state, ctx)
