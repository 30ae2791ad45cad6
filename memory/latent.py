"""Latent replay (Pellegrini, Graffieti, Lomonaco & Maltoni, "Latent Replay for Real-Time
Continual Learning", IROS 2020): a reservoir of activations at an intermediate layer of the
learner's model instead of images.

The paper (its method section, *Latent Replay*, and Algorithm 1) stores the activation volumes of the examples it keeps at the
*latent replay layer* and concatenates them, as the layer's output, with the current batch's
activations; the layers below the cut are frozen or learn at a slowed rate so the stored
activations stay valid, the layers above learn at full pace. Here the stored activations are
float16 values or 8-/4-bit uniformly quantised values (the paper keeps 32-bit floats and notes
that activations compress well; the bit width is a setting, ``bits``).

This module never imports the learner. It reaches the model only through ``ctx`` (the agent):
``ctx.split(layer)`` checks the cut point (an unknown one raises with the model's cut points),
``ctx.features(x, layer)`` gives the activations to store, ``ctx.slow_lower(layer, factor)``
freezes (``lower_lr=0``) or slows the layers below the cut at the end of the first task. Replay
batches carry ``layer``, and the learner's one forward routes them through the layers above the
cut (``agents.base.Agent.forward``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits
from memory.buffers import reservoir_slots

BITS = (16, 8, 4)
SCALE_BITS = 32  # the per-item minimum and maximum of a quantised item, float16 each


def latent_item_bits(numel: int, bits: int, spec: MemorySpec, logits: bool = False) -> int:
    """Bits of one stored item: ``numel`` activations at ``bits`` each, the 32 bits of its
    float16 range (quantised widths only), its label and task id, and ``32 * n_classes`` bits of
    float32 logits when DER/DER++ store them."""
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS} (float16, or 8-/4-bit quantised), got {bits!r}")
    scale = 0 if bits == 16 else SCALE_BITS
    return numel * bits + scale + spec.label_bits + spec.task_bits + (32 * spec.n_classes if logits else 0)


def quantise(z: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform per-item quantisation of ``z`` (``(n, numel)``) to ``bits`` (8 or 4).

    Each item's range ``[lo, hi]`` is rounded to float16 first (what is stored), then every value
    maps to ``round((z - lo) / (hi - lo) * (2**bits - 1))``. 4-bit codes are packed two to a
    byte (low nibble first).

    Returns:
        ``(codes, ranges)``: ``uint8`` codes ``(n, ceil(numel * bits / 8))`` and float16
        ``(n, 2)`` ranges.
    """
    lo = z.amin(1).half()
    hi = z.amax(1).half()
    levels = 2**bits - 1
    span = (hi.float() - lo.float()).clamp_min(1e-12)
    q = ((z - lo.float()[:, None]) / span[:, None] * levels).round_().clamp_(0, levels).to(torch.uint8)
    if bits == 4:
        if q.shape[1] % 2:
            q = torch.cat([q, q.new_zeros(len(q), 1)], 1)
        q = q[:, 0::2] | (q[:, 1::2] << 4)
    return q, torch.stack([lo, hi], 1)


def dequantise(codes: torch.Tensor, ranges: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`quantise`: float32 ``(n, numel)`` at the levels' centres."""
    if bits == 4:
        codes = torch.stack([codes & 15, codes >> 4], 2).reshape(len(codes), -1)[:, :numel]
    lo, hi = ranges[:, 0].float(), ranges[:, 1].float()
    return lo[:, None] + codes.float() * ((hi - lo) / (2**bits - 1))[:, None]


class LatentReplay(Memory):
    """A reservoir of the learner's activations at cut point ``layer`` (latent replay).

    Storage per item (exact; :func:`latent_item_bits`): its activations at ``bits`` each
    (float16 at 16; uniformly quantised at 8 or 4, plus its float16 range, 32 bits), its label and
    task id, and with DER/DER++ its float32 logits. The capacity is ``budget // item bits``,
    known once the model is bound (the feature size depends on the model and cut). Writes follow
    reservoir sampling (Vitter 1985) over the stream, as ``reservoir`` does.

    At the end of the first task the layers below the cut are frozen (``lower_lr=0``, the
    paper's choice for its real-time experiments) or train at ``lower_lr`` times the learning
    rate from then on (the paper's slowed variant). Activations written while the lower part
    still learns (the first task, or always with ``lower_lr > 0``) are those of the lower part at
    write time: the paper accepts this staleness, which ``lower_lr`` trades against plasticity.

    Args:
        spec: The stream's shape.
        budget: Storage budget in bits.
        layer: Cut point of the model (``hidden1``/``hidden2`` for the MLPs, ``stem``,
            ``stage1``-``stage4`` for the ResNets, ``block1``-``block3`` for the ConvNet).
        bits: 16 (float16), 8 or 4 (quantised).
        lower_lr: Learning-rate factor of the layers below the cut after the first task (0 freezes).
        logits: Also store each item's float32 logits (DER, DER++).
        seed: Seeds the write policy.
    """

    name = "latent"

    def __init__(self, spec: MemorySpec, budget: int, layer: str = "hidden1", bits: int = 8,
                 lower_lr: float = 0.0, logits: bool = False, seed: int = 0):
        super().__init__(spec)
        if bits not in BITS:
            raise ValueError(f"memory.bits must be one of {BITS} (float16, or 8-/4-bit quantised), got {bits!r}")
        if not (isinstance(lower_lr, (int, float)) and math.isfinite(lower_lr) and lower_lr >= 0):
            raise ValueError(f"memory.lower_lr must be a number >= 0 (0 freezes the layers below the cut), "
                             f"got {lower_lr!r}")
        self.budget, self.layer, self.bits = int(budget), str(layer), int(bits)
        self.lower_lr, self.keep_logits = float(lower_lr), bool(logits)
        self.n_seen, self.capacity, self.shape = 0, 0, None
        self.rng = np.random.default_rng(seed)
        self.first_task: int | None = None

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> LatentReplay:
        return cls(spec, budget_bits(budget, spec), **kwargs)

    # ----------------------------------------------------------------- sizing
    def bind(self, ctx: Any) -> None:
        """Check the cut point on the learner's model and size the store from its feature shape."""
        ctx.split(self.layer)  # an unknown cut point raises, listing the model's
        c, h, w = self.spec.image_shape
        probe = torch.zeros(1, c, h, w, device=self.spec.device)
        self.shape = tuple(ctx.features(probe, self.layer).shape[1:])
        self.capacity = self.budget // self.item_bits
        n, dev = self.capacity, self.spec.device
        width = self.numel * 2 if self.bits == 16 else math.ceil(self.numel * self.bits / 8)
        self.codes = torch.zeros(n, width, dtype=torch.uint8, device=dev)  # float16 bytes at 16 bits
        self.ranges = torch.zeros(n, 2, dtype=torch.float16, device=dev)
        self.y = torch.zeros(n, dtype=torch.int64, device=dev)
        self.t = torch.zeros(n, dtype=torch.int64, device=dev)
        self.logits = torch.zeros(n if self.keep_logits else 0, self.spec.n_classes, device=dev)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def item_bits(self) -> int:
        return latent_item_bits(self.numel, self.bits, self.spec, self.keep_logits)

    # ----------------------------------------------------------------- protocol
    def _encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = z.reshape(len(z), -1).float()
        if self.bits == 16:
            return flat.half().view(torch.uint8).reshape(len(z), -1), torch.zeros(len(z), 2, dtype=torch.float16)
        return quantise(flat, self.bits)

    def decode(self, codes: torch.Tensor, ranges: torch.Tensor) -> torch.Tensor:
        """Stored codes -> float32 activations of shape ``(n, *shape)``."""
        if self.bits == 16:
            flat = codes.view(torch.float16).float()
        else:
            flat = dequantise(codes, ranges, self.bits, self.numel)
        return flat.reshape(len(codes), *self.shape)

    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None,
                logits: torch.Tensor | None = None) -> None:
        """Write the batch's activations by reservoir sampling (``logits`` required with ``logits=True``)."""
        if self.shape is None:
            self.bind(ctx)
        if self.keep_logits and logits is None:
            raise ValueError("latent with logits=True stores the model's logits: call observe(..., logits=...)")
        if self.first_task is None:
            self.first_task = int(t)
        src, dst = reservoir_slots(self.n_seen, len(x), self.capacity, self.rng)
        self.n_seen += len(x)
        if not len(src):
            return
        src_t = torch.as_tensor(src, device=x.device)
        dst_t = torch.as_tensor(dst, device=self.codes.device)
        codes, ranges = self._encode(ctx.features(x, self.layer)[src_t])
        self.codes[dst_t] = codes.to(self.codes.device)
        self.ranges[dst_t] = ranges.to(self.ranges.device)
        self.y[dst_t] = y[src_t].to(self.y.device)
        self.t[dst_t] = int(t)
        if self.keep_logits:
            self.logits[dst_t] = logits[src_t].detach().float().to(self.logits.device)

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        if self.items == 0:
            return None
        idx = torch.randint(0, self.items, (n,), generator=generator,
                            device=generator.device if generator else "cpu").to(self.codes.device)
        extras = {"logits": self.logits[idx]} if self.keep_logits else None
        return ReplayBatch(self.decode(self.codes[idx], self.ranges[idx]), self.t[idx], self.y[idx], extras,
                           layer=self.layer)

    def end_task(self, t: int, ctx: Any = None) -> None:
        """After the first task, freeze or slow the layers below the cut (``ctx.slow_lower``)."""
        if ctx is not None and t == (self.first_task if self.first_task is not None else t):
            ctx.slow_lower(self.layer, self.lower_lr)

    def tasks(self) -> list[int]:
        return sorted(set(self.t[: self.items].tolist()))

    @property
    def items(self) -> int:
        return min(self.n_seen, self.capacity)

    @property
    def storage_bits(self) -> int:
        return 0 if self.shape is None else self.items * self.item_bits

    def state_dict(self) -> dict:
        if self.shape is None:
            return {"n_seen": 0}
        return {"codes": self.codes, "ranges": self.ranges, "y": self.y, "t": self.t, "logits": self.logits,
                "n_seen": self.n_seen, "rng": self.rng.bit_generator.state, "shape": list(self.shape),
                "first_task": -1 if self.first_task is None else self.first_task}

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if "codes" not in state:
            return
        if self.shape is None:
            self.bind(ctx)
        if list(self.shape) != list(state["shape"]):
            raise ValueError(f"checkpoint holds activations of shape {state['shape']}, this model's cut "
                             f"{self.layer!r} gives {list(self.shape)}")
        for key in ("codes", "ranges", "y", "t", "logits"):
            getattr(self, key).copy_(state[key])
        self.n_seen = int(state["n_seen"])
        self.rng.bit_generator.state = state["rng"]
        self.first_task = None if state["first_task"] < 0 else int(state["first_task"])
