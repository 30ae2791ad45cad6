"""REMIND's memory (Hayes, Kafle, Shrestha, Acharya & Kanan, "REMIND Your Neural Network to
Prevent Catastrophic Forgetting", ECCV 2020, method section *REMIND*): features of a frozen lower network stored as
product-quantisation codes, replayed reconstructed.

A feature tensor of the learner's cut (``(C,)`` for an MLP layer, ``(C, H, W)`` for a CNN stage)
is read as one ``C``-dimensional vector per spatial position, as REMIND's code quantises each of
the 7x7 positions of its ResNet-18 features (``REMINDModel.fit_incremental_batch``); each vector is
split into ``m`` sub-vectors of ``C / m`` values and each sub-vector stored as the index of its
nearest centroid among ``2**nbits`` (Jégou et al. 2011's product quantiser; REMIND: m = 32,
256 centroids, 49 x 32 bytes = 1,568 bytes per ImageNet example). The codebooks are fitted on the
base initialisation's features and never change.

Two quantiser backends fit the codebooks: ``faiss`` (faiss-cpu's ``ProductQuantizer``, REMIND's
choice, the optional extra ``pip install 'cl-env[pq]'``) and ``kmeans`` (Lloyd's k-means in torch
here, seeded, always available). Encoding and decoding are the same torch code for both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits, to_uint8
from memory.buffers import reservoir_slots
from memory.product_quantiser import (
    BACKENDS,
    argmin_last,
    evict_largest_class,
    fit_codebooks,
    from_vectors,
    kmeans,
    pq_decode,
    pq_encode,
    require_faiss,
    to_vectors,
)

__all__ = ["BACKENDS", "PQMemory", "argmin_last", "evict_largest_class", "fit_codebooks", "from_vectors", "kmeans",
           "pq_decode", "pq_encode", "require_faiss", "to_vectors"]


# ----------------------------------------------------------------- the memory
class PQMemory(Memory):
    """Product-quantised features of the learner's cut ``layer`` (REMIND's memory).

    Two phases, driven by the ``remind`` agent:

    1. Base initialisation: the memory holds the base examples themselves (``uint8`` images,
       counted at 8 bits per pixel with label and task id, up to ``base_limit`` of them, a
       reservoir beyond) so the agent can train on them and the quantiser can be fitted on the
       features of the *final* lower network. REMIND does the same offline (its base
       initialisation sees the whole base set); this is the only time the memory exceeds the
       budget, and it ends at the base phase's end.
    2. :meth:`fit` (called by the agent once the lower part is frozen): the codebooks are fitted
       on the base examples' features, the examples are encoded and kept as codes, the images
       dropped. From then on every new example is stored as codes; when full, a random item of
       the class holding most is replaced (REMIND's code).

    Storage per item after the base phase: ``S * m * nbits`` bits of codes (``S`` spatial
    positions, 1 for an MLP layer) plus its label and task id. The codebooks,
    ``2**nbits * C * codebook_bits`` bits, are reported as ``overhead_bits`` and must fit the
    budget together with the codes: the capacity is ``(budget - codebook) // item bits``, and a
    budget that cannot hold the codebook is refused when the learner is built.

    Args:
        spec: The stream's shape.
        budget: Storage budget in bits.
        layer: Cut point of the learner's model (see ``agents.models.cut_points``).
        m: Sub-vectors per feature vector (must divide the channel count ``C``).
        nbits: Bits per code (``2**nbits`` centroids per sub-space; REMIND: 8).
        codebook_bits: Bits each stored centroid value takes (16: float16; 32: float32).
        backend: ``kmeans`` (torch, always available) or ``faiss`` (the ``pq`` extra).
        iters: k-means iterations (25, faiss's default).
        base_limit: Base examples held at most during base initialisation.
        seed: Seeds the write policy and the quantiser's fit.
    """

    name = "pq"
    static_items = True

    def __init__(self, spec: MemorySpec, budget: int, layer: str = "hidden1", m: int = 10, nbits: int = 8,
                 codebook_bits: int = 16, backend: str = "kmeans", iters: int = 25, base_limit: int = 5000,
                 seed: int = 0):
        super().__init__(spec)
        if backend not in BACKENDS:
            raise ValueError(f"memory.backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "faiss":
            require_faiss()
        for key, value, low, high in (("m", m, 1, None), ("nbits", nbits, 1, 16), ("iters", iters, 1, None),
                                      ("base_limit", base_limit, 1, None)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
                raise ValueError(f"memory.{key} must be an integer in [{low}, {high or 'inf'}), got {value!r}")
        if codebook_bits not in (16, 32):
            raise ValueError(f"memory.codebook_bits must be 16 (float16) or 32 (float32), got {codebook_bits!r}")
        self.budget, self.layer, self.m, self.nbits = int(budget), str(layer), m, nbits
        self.codebook_bits, self.backend, self.iters, self.base_limit = codebook_bits, backend, iters, base_limit
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.shape: tuple[int, ...] | None = None
        self.centroids: torch.Tensor | None = None
        self.capacity = self.held = self.base_seen = self.base_held = 0
        dev = spec.device
        self.base_x = torch.zeros(0, *spec.image_shape, dtype=torch.uint8, device=dev)
        self.base_y = torch.zeros(0, dtype=torch.int64, device=dev)
        self.base_t = torch.zeros(0, dtype=torch.int64, device=dev)

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> PQMemory:
        return cls(spec, budget_bits(budget, spec), **kwargs)

    # ----------------------------------------------------------------- sizing
    def bind(self, ctx: Any) -> None:
        """Check the cut point, ``m`` and the budget against the learner's model; size the store."""
        ctx.split(self.layer)
        c, h, w = self.spec.image_shape
        self.shape = tuple(ctx.features(torch.zeros(1, c, h, w, device=self.spec.device), self.layer).shape[1:])
        channels, positions = self.shape[0], math.prod(self.shape[1:])
        if channels % self.m:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise ValueError(f"memory.m={self.m} does not divide the feature size {channels} at cut {self.layer!r}; "
                             f"m must be one of {divisors}")
        if self.codebook_overhead > self.budget:
            ex = self.spec.example_bits
            raise ValueError(f"budget too small for the pq codebook: {2**self.nbits} centroids x {channels} values x "
                             f"{self.codebook_bits} bits = {self.codebook_overhead} bits "
                             f"({self.codebook_overhead / ex:.1f} effective examples) > budget {self.budget} bits; "
                             f"raise --budget to at least {math.ceil(self.codebook_overhead / ex) + 1}, or lower "
                             "memory.nbits / memory.codebook_bits, or cut where there are fewer channels")
        self.positions = positions
        self.capacity = (self.budget - self.codebook_overhead) // self.item_bits
        dev = self.spec.device
        self.codes = torch.zeros(self.capacity, positions, self.m,
                                 dtype=torch.uint8 if self.nbits <= 8 else torch.int64, device=dev)
        self.y = torch.zeros(self.capacity, dtype=torch.int64, device=dev)
        self.t = torch.zeros(self.capacity, dtype=torch.int64, device=dev)

    @property
    def codebook_overhead(self) -> int:
        """Bits of the codebooks: ``2**nbits`` centroids x ``C`` values x ``codebook_bits``."""
        return 2**self.nbits * self.shape[0] * self.codebook_bits

    @property
    def item_bits(self) -> int:
        """Bits of one stored item: its codes, label and task id."""
        return math.prod(self.shape[1:]) * self.m * self.nbits + self.spec.label_bits + self.spec.task_bits

    @property
    def fitted(self) -> bool:
        return self.centroids is not None

    # ----------------------------------------------------------------- codec
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """Features ``(n, *shape)`` -> codes ``(n, S, m)``."""
        return pq_encode(to_vectors(z), self.centroids).reshape(len(z), -1, self.m)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(n, S, m)`` -> reconstructed float32 features ``(n, *shape)``."""
        return from_vectors(pq_decode(codes.reshape(-1, self.m), self.centroids), self.shape)

    def reconstruct(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(decode(encode(z)), codes)``: what REMIND trains and predicts on (its new examples
        and test features go through the quantiser too), and the codes to store."""
        codes = self.encode(z)
        return self.decode(codes), codes

    # ----------------------------------------------------------------- protocol
    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None,
                codes: torch.Tensor | None = None) -> None:
        """Base phase: hold the images (reservoir beyond ``base_limit``); then store codes
        (``codes``: the batch's, when the learner has just encoded it; else encoded here)."""
        if self.shape is None:
            self.bind(ctx)
        if not self.fitted:
            self._hold_base(x, t, y)
            return
        if codes is None:
            codes = self.encode(ctx.features(x, self.layer))
        codes, y = codes.to(self.codes.device), y.to(self.y.device)
        free = min(len(x), self.capacity - self.held)
        if free > 0:  # free slots: written in one go
            self.codes[self.held:self.held + free], self.y[self.held:self.held + free] = codes[:free], y[:free]
            self.t[self.held:self.held + free] = int(t)
            self.held += free
        if free == len(x) or self.capacity == 0:
            return
        labels = self.y[: self.held].cpu().numpy()
        for i in range(max(free, 0), len(x)):  # full: REMIND's replacement, one example at a time
            slot = evict_largest_class(labels, int(y[i]), self.rng)
            if slot >= 0:
                self.codes[slot], self.y[slot], self.t[slot] = codes[i], y[i], int(t)
                labels[slot] = int(y[i])

    def _hold_base(self, x: torch.Tensor, t: int, y: torch.Tensor) -> None:
        """Hold base examples in ``base_limit`` preallocated slots, by reservoir sampling beyond."""
        if self.base_x.shape[0] == 0:
            dev = self.base_x.device
            self.base_x = torch.zeros(self.base_limit, *self.spec.image_shape, dtype=torch.uint8, device=dev)
            self.base_y = torch.zeros(self.base_limit, dtype=torch.int64, device=dev)
            self.base_t = torch.zeros(self.base_limit, dtype=torch.int64, device=dev)
        src, dst = reservoir_slots(self.base_seen, len(x), self.base_limit, self.rng)
        self.base_seen += len(x)
        self.base_held = min(self.base_seen, self.base_limit)
        if len(src):
            src_t, dst_t = torch.as_tensor(src, device=x.device), torch.as_tensor(dst, device=self.base_x.device)
            self.base_x[dst_t] = to_uint8(x[src_t]).to(self.base_x.device)
            self.base_y[dst_t] = y[src_t].to(self.base_y.device)
            self.base_t[dst_t] = int(t)

    def _hold_base_state(self, state: dict) -> None:
        n, dev = self.base_held, self.base_x.device
        self.base_x = torch.zeros(self.base_limit, *self.spec.image_shape, dtype=torch.uint8, device=dev)
        self.base_y = torch.zeros(self.base_limit, dtype=torch.int64, device=dev)
        self.base_t = torch.zeros(self.base_limit, dtype=torch.int64, device=dev)
        self.base_x[:n], self.base_y[:n], self.base_t[:n] = state["base_x"], state["base_y"], state["base_t"]

    def base_examples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The base examples held during base initialisation: float images in [0, 1], labels, task ids."""
        n = self.base_held
        return self.base_x[:n].float().div(255.0), self.base_y[:n], self.base_t[:n]

    def fit(self, ctx: Any, batch: int = 500) -> None:
        """End of the base phase: fit the codebooks on the base examples' features (the lower part
        as it is now, frozen), store the examples as codes (REMIND's base-initialisation codes join
        its memory) and drop the images."""
        if self.shape is None:
            self.bind(ctx)
        x, y, t = self.base_examples()
        feats = torch.cat([ctx.features(x[i:i + batch], self.layer) for i in range(0, len(x), batch)])
        self.centroids = fit_codebooks(to_vectors(feats), self.m, self.nbits, self.backend, self.seed, self.iters)
        if self.codebook_bits == 16:
            self.centroids = self.centroids.half().float()  # what is stored is what is decoded
        self.centroids = self.centroids.to(self.spec.device)
        order = torch.from_numpy(self.rng.permutation(len(x))).to(x.device)
        for ti in sorted(set(t.tolist())):  # in stream order of tasks, each task's examples shuffled
            idx = order[t[order] == ti]
            for i in range(0, len(idx), batch):
                self.observe(x[idx[i:i + batch]], ti, y[idx[i:i + batch]], ctx)
        self.base_x, self.base_y, self.base_t = self.base_x[:0], self.base_y[:0], self.base_t[:0]
        self.base_held = 0

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        """``n`` items drawn uniformly with replacement, decoded (``layer`` set: features)."""
        if self.held == 0:
            return None
        idx = torch.randint(0, self.held, (n,), generator=generator,
                            device=generator.device if generator else "cpu").to(self.codes.device)
        return ReplayBatch(self.decode(self.codes[idx]), self.t[idx], self.y[idx], layer=self.layer)

    def tasks(self) -> list[int]:
        return sorted(set(self.t[: self.held].tolist()))

    @property
    def items(self) -> int:
        return self.held + self.base_held

    @property
    def storage_bits(self) -> int:
        per_image = self.spec.example_bits + self.spec.label_bits + self.spec.task_bits
        return self.base_held * per_image + (self.held * self.item_bits if self.shape else 0)

    @property
    def overhead_bits(self) -> int:
        return self.codebook_overhead if self.fitted else 0

    def counters(self) -> dict[str, int]:
        return {"pq_base_examples_seen": self.base_seen}

    def state_dict(self) -> dict:
        n = self.base_held
        state = {"base_x": self.base_x[:n], "base_y": self.base_y[:n], "base_t": self.base_t[:n],
                 "base_seen": self.base_seen,
                 "held": self.held, "rng": self.rng.bit_generator.state}
        if self.shape is not None:
            state.update(codes=self.codes, y=self.y, t=self.t)
        if self.fitted:
            state["centroids"] = self.centroids
        return state

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if self.shape is None and ctx is not None:
            self.bind(ctx)
        self.base_seen, self.held = int(state["base_seen"]), int(state["held"])
        self.base_held = len(state["base_y"])
        self.base_x, self.base_y, self.base_t = state["base_x"][:0], state["base_y"][:0], state["base_t"][:0]
        if self.base_held:  # back into preallocated slots
            self._hold_base_state(state)
        self.rng.bit_generator.state = state["rng"]
        if "codes" in state:
            self.codes.copy_(state["codes"])
            self.y.copy_(state["y"])
            self.t.copy_(state["t"])
        self.centroids = state.get("centroids")
