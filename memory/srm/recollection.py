"""The Scalable Recollection Module (Riemer et al., *Scalable Recollections for Continual Lifelong
Learning*): a discrete VAE plus an index buffer of bit-packed codes.

Each replayable item is a code of ``c`` categorical variables of ``l`` categories, stored at
``k = c * ceil(log2 l)`` bits (appendix, "binary representation"), with its label (and, for the
reservoir policy, its task id) in the same packed row of a :class:`memory.bitstore.BitStore`.
With ``entropy_coding`` (beyond the paper, :mod:`memory.srm.entropy`) each code is instead
range-coded under a categorical prior fitted on the codes seen so far, and the same bits hold as
many items as their coded sizes allow.
Recollections are the current decoder's reconstructions of the stored codes. Algorithm 1's
stabilisation runs in :meth:`SRM.observe`: ``N`` recollection sets, ``N`` autoencoder steps on
each set joined with the incoming batch, then the batch is encoded and written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from cl_env import checks
from memory.base import Memory, MemorySpec, ReplayBatch
from memory.bitstore import BitStore
from memory.buffers import reservoir_slots
from memory.nets.discrete_vae import DiscreteVAE, uniform_noise
from memory.srm.budget import latent_for_budget
from memory.srm.entropy import PRIORS, CodedStore
from memory.srm.msss import msss_select
from memory.srm.vae_io import load_vae

POLICIES = ("reservoir", "task_ring")


class SRM(Memory):
    """Scalable Recollection Module: discrete VAE + packed index buffer.

    Args:
        spec: The stream's shape.
        c: Categorical variables per code.
        l: Categories per variable.
        capacity: Items held at most (the paper's 3,000 on MNIST, 5,000 on CIFAR-100); with
            ``entropy_coding``, the bits of this many packed rows, filled with coded items.
        policy: ``"reservoir"`` (experience replay, Algorithm 1) or ``"task_ring"`` (the most
            recent items of each task, ``capacity / n_tasks`` per task: GEM, Algorithm 2).
        n_sets: N, recollection sets and autoencoder steps per incoming batch.
        ae_lr: The autoencoder's learning rate beta (Adam).
        set_size: Recollections per set.
        tau: Gumbel-softmax temperature (1.0).
        vae: A (pre)trained :class:`DiscreteVAE` to start from (transfer), else a fresh one.
        vae_path: A file written by :func:`save_vae` (``cl-env pretrain-srm``) to start from.
        decode_per_task: GEM only (:meth:`padded`): decode this many random codes of each past
            task per step instead of all of them (None, the paper's Algorithm 2). A cheaper
            variant that changes the algorithm: GEM's constraints then come from a subsample.
        entropy_coding: Store each code range-coded under a fitted categorical prior
            (:mod:`memory.srm.entropy`; needs the ``entropy`` extra) instead of bit-packed at
            ``ceil(log2 l)`` bits a variable (the paper's, the default). Reservoir policy only.
        entropy_prior: With ``entropy_coding``: ``"variable"`` (a distribution per variable,
            measured fewer bits on MNIST) or ``"shared"`` (one for all variables).
        seed: Seeds the VAE initialisation, the Gumbel noise and the write policy.
    """

    name = "srm"
    sized_arguments = {"c": "change --budget or memory.items (eq. 4 sets c)", "l": "--set memory.categories=8"}
    static_items = False  # recollections change as the decoder learns

    def __init__(self, spec: MemorySpec, c: int, l: int = 4, capacity: int = 3000,  # noqa: E741
                 policy: str = "reservoir", n_sets: int = 2, ae_lr: float = 1e-3, set_size: int = 10,
                 tau: float = 1.0, vae: DiscreteVAE | None = None, vae_path: str | None = None,
                 decode_per_task: int | None = None, entropy_coding: bool = False,
                 entropy_prior: str = "variable", seed: int = 0):
        super().__init__(spec)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if n_sets < 1:
            raise ValueError(f"n_sets must be >= 1, got {n_sets}")
        if decode_per_task is not None and (int(decode_per_task) != decode_per_task or decode_per_task < 1):
            raise ValueError(f"decode_per_task must be a positive integer or None (all codes), got {decode_per_task!r}")
        checks.boolean("memory.entropy_coding", entropy_coding, "--set memory.entropy_coding=true (or false)")
        checks.choice("memory.entropy_prior", entropy_prior, PRIORS, "--set memory.entropy_prior=variable")
        if entropy_coding and policy != "reservoir":
            raise ValueError(f"memory.entropy_coding=true supports policy 'reservoir' (er), got {policy!r} "
                             "(GEM's per-task ring); fix: drop memory.entropy_coding for this agent")
        self.decode_per_task = None if decode_per_task is None else int(decode_per_task)
        self.entropy_coding = entropy_coding
        self.c, self.l, self.policy = c, l, policy
        self.n_sets, self.set_size = n_sets, set_size
        self.capacity = int(capacity)
        dev = torch.device(spec.device)
        if vae_path is not None:
            vae = load_vae(vae_path)
        if vae is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                vae = DiscreteVAE(spec.image_shape, c, l, tau)
        elif (vae.c, vae.l, vae.image_shape) != (c, l, tuple(spec.image_shape)):
            raise ValueError(f"the given VAE has c={vae.c}, l={vae.l}, shape {vae.image_shape}; "
                             f"this memory needs c={c}, l={l}, shape {tuple(spec.image_shape)}")
        self.vae = vae.to(dev)
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=ae_lr)
        per_var = max(1, math.ceil(math.log2(l)))
        widths = [per_var] * c + [spec.label_bits] + ([spec.task_bits] if policy == "reservoir" else [])
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.rng = np.random.default_rng(seed + 2)
        if entropy_coding:  # the same bits as `capacity` packed rows
            self.store = CodedStore(c, l, sum(widths[c:]), self.capacity * sum(widths), entropy_prior, self.rng)
        else:
            self.store = BitStore(self.capacity, widths)
        self.n_seen = 0
        if policy == "task_ring":
            base, extra = divmod(self.capacity, spec.n_tasks)
            self.caps = np.array([base + (i < extra) for i in range(spec.n_tasks)], dtype=np.int64)
            self.offsets = np.concatenate([[0], np.cumsum(self.caps)[:-1]])
            self.count = np.zeros(spec.n_tasks, dtype=np.int64)
        self._set1: ReplayBatch | None = None
        self.last_originals: torch.Tensor | None = None
        self._visual_noise: torch.Tensor | None = None
        self._visual: torch.Tensor | None = None

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, items: int = 3000, categories: int = 4,
                   policy: str = "reservoir", total: bool = False, **kwargs) -> SRM:
        """The SRM whose codes fill ``budget`` effective examples over ``items`` items (eq. 4 / 5)."""
        c = latent_for_budget(budget, spec, items, categories, policy, total)
        return cls(spec, c, categories, items, policy, **kwargs)

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> SRM:
        """Budget 100 over 3,000 items (the paper's MNIST-Rotations setting)."""
        return cls.for_budget(100, spec, **kwargs)

    # ----------------------------------------------------------------- rows
    def _rows_held(self) -> np.ndarray:
        if self.entropy_coding:
            return np.arange(self.store.items)
        if self.policy == "reservoir":
            return np.arange(min(self.n_seen, self.capacity))
        held = np.minimum(self.count, self.caps)
        return np.concatenate([self.offsets[t] + np.arange(held[t]) for t in range(len(held))])

    def _decode_rows(self, rows: np.ndarray) -> ReplayBatch:
        fields = torch.from_numpy(self.store.read(rows))
        dev = next(self.vae.parameters()).device
        codes = fields[:, : self.c].to(dev)
        y = fields[:, self.c].to(dev)
        if self.policy == "reservoir":
            t = fields[:, self.c + 1].to(dev)
        else:
            t = torch.from_numpy(np.searchsorted(self.offsets, rows, side="right") - 1).to(dev)
        with torch.no_grad():
            x = self.vae.decode(codes)
        return ReplayBatch(x, t, y)

    def _write(self, x: torch.Tensor, t: int, y: torch.Tensor) -> None:
        codes = self.vae.encode(x, self.generator).cpu().numpy()
        b = len(codes)
        if self.entropy_coding:
            self.store.add(codes, y.cpu().numpy(), t)
            self.n_seen += b
            return
        if self.policy == "reservoir":
            src, dst = reservoir_slots(self.n_seen, b, self.capacity, self.rng)
            self.n_seen += b
            extra = np.stack([y.cpu().numpy()[src], np.full(len(src), t)], 1)
        else:
            cap = int(self.caps[t])
            if cap == 0:
                return
            src = np.arange(b)[-cap:]
            dst = self.offsets[t] + (self.count[t] + np.arange(len(src))) % cap
            self.count[t] += len(src)
            extra = y.cpu().numpy()[src, None]
        if len(src):
            self.store.write(dst, np.concatenate([codes[src], extra], 1))

    # ----------------------------------------------------------------- protocol
    def observe(self, x: torch.Tensor, t: int | None, y: torch.Tensor, ctx: Any = None) -> None:
        """Algorithm 1's recollection-module training, then encode the batch and write it."""
        t = 0 if t is None else int(t)
        sets = [self._set1] if self._set1 is not None else []
        self._set1 = None
        while self.items and len(sets) < self.n_sets:
            sets.append(self._sample(self.set_size))
        self.vae.train()
        for s in range(self.n_sets):
            batch = torch.cat([sets[s].x, x]) if s < len(sets) else x
            loss = self.vae.loss(batch.detach(), self.generator)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.vae.eval()
        self._write(x.detach(), t, y)
        # the visual's recollection is decoded only when asked for (visuals()); its noise is drawn
        # now, so the random stream, and every number of the run, is what an eager decode gives
        self.last_originals = x.detach()[:10]
        self._visual_noise = uniform_noise((len(self.last_originals), self.c, self.l), self.generator)
        self._visual = None

    def end_task(self, t: int, ctx: Any = None) -> None:
        """With ``entropy_coding``: refit the prior on the codes seen so far and recode the store."""
        if self.entropy_coding:
            self.store.refit()

    def add(self, x: torch.Tensor, t: int, y: torch.Tensor) -> None:
        """Encode ``x`` and write it under the policy, without training the autoencoder (for a
        memory built from a pretrained autoencoder, e.g. generative distillation)."""
        self._write(x.detach(), int(t), y)

    def _sample(self, n: int) -> ReplayBatch:
        held = self._rows_held()
        rows = held[self.rng.integers(0, len(held), n)]
        return self._decode_rows(rows)

    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        """Buffer sampling: ``n`` stored codes, decoded by the current decoder (Algorithm 1's
        first recollection set, which :meth:`observe` reuses for the autoencoder)."""
        if self.items == 0:
            return None
        self._set1 = self._sample(n)
        return self._set1

    def sample_active(self, n: int, difficulty, k: int = 10, diverse: bool = False,
                      pool: int = 10, gamma: float = 0.5) -> ReplayBatch | None:
        """Active (and diverse) buffer sampling (SRM appendix, "Designing generative sampling
        heuristics"): for each of ``n`` outputs draw ``k`` stored codes — with ``diverse``, draw
        ``k * pool`` and keep ``k`` by :func:`msss_select` — decode them and keep the one the
        learner finds hardest.

        Args:
            n: Recollections to return.
            difficulty: ``x -> (len(x),)`` scores, higher = harder (e.g. the student's loss
                against the teacher).
            k: Candidates per output (10 in the paper).
            diverse: Filter ``k * pool`` candidates down to ``k`` with MSSS first.
            pool: The diverse step's oversampling factor (10 in the paper).
            gamma: MSSS's subsampled fraction.
        """
        if self.items == 0:
            return None
        held = self._rows_held()
        out = []
        for _ in range(n):
            rows = held[self.rng.integers(0, len(held), k * pool if diverse else k)]
            cand = self._decode_rows(rows)
            if diverse:
                keep = torch.from_numpy(msss_select(cand.x, k, gamma, self.rng)).to(cand.x.device)
                cand = ReplayBatch(cand.x[keep], cand.t[keep], cand.y[keep])
            with torch.no_grad():
                i = int(torch.argmax(difficulty(cand.x)))
            out.append((cand.x[i], cand.t[i], cand.y[i]))
        return ReplayBatch(*(torch.stack(v) for v in zip(*out, strict=True)))

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Code sampling (Table 4's alternative): uniform random codes, decoded, no buffer."""
        codes = torch.randint(0, self.l, (n, self.c), generator=generator).to(next(self.vae.parameters()).device)
        with torch.no_grad():
            return self.vae.decode(codes)

    def tasks(self) -> list[int]:
        if self.policy == "task_ring":
            return [int(t) for t in np.nonzero(self.count)[0]]
        if self.items == 0:
            return []
        if self.entropy_coding:
            return sorted(set(self.store.tasks))
        return sorted(set(self.store.read(self._rows_held())[:, self.c + 1].tolist()))

    def task_items(self, t: int) -> int:
        if self.policy != "task_ring":
            raise NotImplementedError("per-task access needs policy='task_ring'")
        return int(min(self.count[t], self.caps[t]))

    def sample_task(self, t: int, n: int | None = None, ctx: Any = None,
                    generator: torch.Generator | None = None) -> ReplayBatch | None:
        k = self.task_items(t)
        if k == 0:
            return None
        rows = self.offsets[t] + np.arange(k)
        if n is not None and n < k:
            rows = rows[self.rng.permutation(k)[:n]]
        return self._decode_rows(rows)

    def padded(self, tasks: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded memories of ``tasks`` stacked ``(T, W, ...)`` with a 0/1 mask (for GEM's vmap).

        All tasks' codes go through the decoder in one batch (Algorithm 2, line 11: every stored
        code of every past task, decoded by the current decoder). With ``decode_per_task = k``,
        only ``k`` codes drawn at random per task are decoded (an explicit cheaper variant, not
        the paper's: docs/benchmarks.md measures it beside the faithful default).
        """
        rows, counts = [], []
        for t in tasks:
            k = self.task_items(t)
            r = self.offsets[t] + np.arange(k)
            if self.decode_per_task is not None and self.decode_per_task < k:
                r = r[self.rng.permutation(k)[: self.decode_per_task]]
            rows.append(r)
            counts.append(len(r))
        width = max(counts)
        batch = self._decode_rows(np.concatenate(rows))
        dev = batch.x.device
        xs = batch.x.new_zeros(len(tasks), width, *batch.x.shape[1:])
        ys = batch.y.new_zeros(len(tasks), width)
        ws = torch.zeros(len(tasks), width, device=dev)
        start = 0
        for i, k in enumerate(counts):  # T slices of one decoded batch, no decode in the loop
            xs[i, :k] = batch.x[start:start + k]
            ys[i, :k] = batch.y[start:start + k]
            ws[i, :k] = 1.0
            start += k
        return xs, ys, ws

    def visuals(self) -> dict[str, torch.Tensor]:
        """The last written batch (top row) above its recollection (bottom row)."""
        if self.last_originals is None:
            return {}
        k = min(10, len(self.last_originals))
        return {"srm/originals_vs_recollections":
                torch.cat([self.last_originals[:k], self.last_recollections[:k]])}

    @property
    def last_recollections(self) -> torch.Tensor | None:
        """The last written batch's first images as stored copies replay (decoded on first use,
        with the noise and the autoencoder of the moment it was written)."""
        if self.last_originals is None:
            return None
        if self._visual is None:
            with torch.no_grad():
                self._visual = self.vae.decode(self.vae.encode(self.last_originals, u=self._visual_noise))
        return self._visual

    def report(self, x: torch.Tensor) -> dict[str, float]:
        """Reconstruction distortion on held-out images: mean absolute pixel error (SRM Table 4 /
        Figure 5's measure, pixels in [0, 1])."""
        out = {"srm/test_distortion_l1": float((self.reconstruct(x) - x).abs().mean())}
        if self.entropy_coding:
            out["srm/bits_per_code"] = self.store.bits_per_code()
        return out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode and decode ``x`` (what a stored copy of it would replay as)."""
        with torch.no_grad():
            return self.vae.decode(self.vae.encode(x, self.generator))

    # ----------------------------------------------------------------- accounting
    @property
    def items(self) -> int:
        if self.entropy_coding or self.policy == "reservoir":
            return self.store.items if self.entropy_coding else min(self.n_seen, self.capacity)
        return int(np.minimum(self.count, self.caps).sum())

    @property
    def item_bits(self) -> int:
        """Bits of one packed row: the code, the label and (reservoir) the task id (with
        ``entropy_coding``: the mean bits of a held item, prior excluded)."""
        if self.entropy_coding:
            return round((self.store.storage_bits - self.store.prior_bits) / max(1, self.items))
        return self.store.width

    @property
    def storage_bits(self) -> int:
        """The packed rows held; with ``entropy_coding`` the coded messages, their labels and
        task ids, and the stored prior (needed to decode, so counted here, not as overhead)."""
        if self.entropy_coding:
            return self.store.storage_bits
        return self.items * self.store.width

    @property
    def overhead_bits(self) -> int:
        """The autoencoder at 32 bits per parameter (eq. 5's ``|theta|``)."""
        return 32 * sum(p.numel() for p in self.vae.parameters())

    def state_dict(self) -> dict:
        store = self.store.state_dict() if self.entropy_coding else self.store.data.copy()
        state = {"vae": self.vae.state_dict(), "opt": self.opt.state_dict(), "store": store,
                 "n_seen": self.n_seen, "generator": self.generator.get_state(),
                 "rng": self.rng.bit_generator.state, "c": self.c, "l": self.l, "capacity": self.capacity}
        if self.policy == "task_ring":
            state["count"] = self.count.copy()
        return state

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        if (state["c"], state["l"], state["capacity"]) != (self.c, self.l, self.capacity):
            raise ValueError("checkpoint's SRM shape (c, l, capacity) differs from this memory's")
        self.vae.load_state_dict(state["vae"])
        self.opt.load_state_dict(state["opt"])
        if isinstance(state["store"], dict) != self.entropy_coding:
            raise ValueError(f"checkpoint's SRM codes are {'not ' * self.entropy_coding}entropy-coded; "
                             f"this memory has entropy_coding={self.entropy_coding}")
        if self.entropy_coding:
            self.store.load_state_dict(state["store"])
        else:
            self.store.data[:] = state["store"]
        self.n_seen = state["n_seen"]
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        if self.policy == "task_ring":
            self.count = np.asarray(state["count"]).copy()
        self._set1 = None
