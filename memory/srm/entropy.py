"""Entropy-coded SRM codes: each stored code range-coded under a fitted categorical prior.

Beyond the SRM paper, whose appendix stores a code of ``c`` variables of ``l`` categories at
``c * ceil(log2 l)`` bits: the discrete VAE's codes are far from uniform, so an entropy coder under
a categorical prior fitted on the codes seen so far stores them in fewer bits and the same budget
holds more recollections.

- **Coder.** ``constriction``'s range coder (``constriction.stream.queue``, Bamler 2022) with its
  ``Categorical`` model. Each item is its own message, so items are evicted and sampled (decoded)
  independently; a message is 32-bit words, stored with its trailing zero bytes dropped (zero
  bytes put back before decoding give the very same words). Range coding was chosen over
  constriction's ANS coder because one short message per item pays ANS's flushed 64-bit state:
  measured on 100 variables of 4 categories at 1.49 bits of entropy each, ANS 1.85 bits a code,
  the range coder 1.64, zlib's raw deflate of the packed codes 2.16 (docs/memories.md). Where the
  message would be no shorter than the packed code (near-uniform codes: the flush costs ~15-20
  bits a message), the item is stored packed instead; one bit per item says which.
- **Prior.** Counts of every code written (per variable, ``(c, l)``, or one distribution shared by
  all variables, ``(1, l)``), smoothed by one, stored as 16-bit fixed-point weights
  (:func:`fit_prior`); the model is rebuilt from those stored integers alone, so the coded bits
  always decode exactly with the prior that is stored. The prior's ``16 * V * l`` bits are needed
  to replay, so they count in ``storage_bits`` against the budget (not as overhead).
- **Refits.** The prior is refitted when the number of codes written has doubled since the last
  refit, and at every task end; each refit recodes every held item under the new prior (decode
  with the old, encode with the new), which can only be exact because both priors are known then.
- **When it pays.** Only while the codes are skewed: a trained autoencoder spreads each variable
  over its categories almost evenly (1.979 bits of 2 per variable over the 20,000 codes of
  MNISTRotations-v0 at budget 100), and then the prior's bits outweigh what coding saves;
  docs/memories.md has the measurements.
- **Write policy.** Reservoir sampling over variable-sized items: a new item is appended while it
  fits; otherwise it takes a reservoir slot (:func:`memory.buffers.reservoir_slots` over the items
  held) or is dropped, and the slot's item, then further uniformly drawn items, are evicted until
  it fits. ``storage_bits`` never exceeds the budget.
"""

from __future__ import annotations

import math

import numpy as np

from memory.buffers import reservoir_slots

try:  # an optional extra: pip install 'cl-env[entropy]'
    import constriction
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    constriction = None

PRIOR_BITS = 16  # bits of one stored prior weight
PRIORS = ("variable", "shared")
MISSING = ("memory.entropy_coding=true needs the constriction package, which is not installed; "
           "fix: pip install 'cl-env[entropy]' (or pip install constriction)")


def require_coder() -> None:
    """Raise one clear line when ``constriction`` (the ``entropy`` extra) is missing."""
    if constriction is None:
        raise ValueError(MISSING)


def fit_prior(counts: np.ndarray) -> np.ndarray:
    """Counts ``(V, l)`` -> 16-bit weights ``(V, l)``: add-one smoothed frequencies scaled to
    ``2**16 - 1``, each at least 1 (no symbol of zero probability)."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    p = counts / counts.sum(-1, keepdims=True)
    return np.maximum(1, np.round(p * 65535)).astype(np.uint16)


def prior_probs(weights: np.ndarray, c: int) -> np.ndarray:
    """The probabilities ``(c, l)`` the coder uses, from the stored weights alone (``V = 1``:
    shared by the ``c`` variables)."""
    w = np.asarray(weights, dtype=np.float64)
    return np.ascontiguousarray(np.broadcast_to(w / w.sum(-1, keepdims=True), (c, w.shape[-1])))


def _model():
    return constriction.stream.model.Categorical(perfect=False)


def encode_codes(codes: np.ndarray, probs: np.ndarray) -> bytes:
    """Range-code one code ``(c,)`` under ``probs`` ``(c, l)``: big-endian words, trailing zero
    bytes dropped."""
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(np.ascontiguousarray(codes, dtype=np.int32), _model(), probs)
    return enc.get_compressed().astype(">u4").tobytes().rstrip(b"\0")


def decode_codes(blob: bytes, probs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_codes`: the ``(c,)`` code."""
    words = np.frombuffer(blob + b"\0" * (-len(blob) % 4), dtype=">u4").astype(np.uint32)
    return constriction.stream.queue.RangeDecoder(words).decode(_model(), probs).astype(np.int64)


def pack_codes(codes: np.ndarray, width: int) -> bytes:
    """A code ``(c,)`` at ``width`` bits a variable, little-endian bits (the packed row's code)."""
    bits = (np.asarray(codes, dtype=np.int64)[:, None] >> np.arange(width)) & 1
    return np.packbits(bits.astype(np.uint8).ravel(), bitorder="little").tobytes()


def unpack_codes(blob: bytes, c: int, width: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`."""
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), bitorder="little")[: c * width]
    return (bits.reshape(c, width).astype(np.int64) << np.arange(width)).sum(1)


def encode_item(codes: np.ndarray, probs: np.ndarray, width: int) -> tuple[bytes, bool]:
    """The smaller of the range-coded message and the packed code: ``(bytes, raw)``."""
    coded = encode_codes(codes, probs)
    if 8 * len(coded) < len(codes) * width:
        return coded, False
    return pack_codes(codes, width), True


def decode_item(blob: bytes, raw: bool, probs: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`encode_item`."""
    return unpack_codes(blob, len(probs), width) if raw else decode_codes(blob, probs)


class CodedStore:
    """Variable-sized entropy-coded items (code, label, task id) within a bit budget.

    Args:
        c: Variables per code.
        l: Categories per variable.
        extra_bits: Bits of each item's label and task id (stored at their packed widths); one
            more bit says whether the item is range-coded or packed (:func:`encode_item`).
        budget_bits: The most ``storage_bits`` may reach (coded items, their labels and task ids,
            and the prior).
        prior: ``"variable"`` (one distribution per variable) or ``"shared"``.
        rng: Draws the reservoir slots and evictions.
    """

    def __init__(self, c: int, l: int, extra_bits: int, budget_bits: int, prior: str,  # noqa: E741
                 rng: np.random.Generator):
        require_coder()
        self.c, self.l, self.extra_bits, self.budget_bits = c, l, int(extra_bits) + 1, int(budget_bits)
        self.width = max(1, math.ceil(math.log2(l)))
        self.prior, self.rng = prior, rng
        rows = c if prior == "variable" else 1
        self.counts = np.zeros((rows, l), dtype=np.int64)
        self.weights = fit_prior(self.counts)  # uniform until the first refit
        self._probs = prior_probs(self.weights, c)
        self.blobs: list[bytes] = []
        self.raw: list[bool] = []  # packed at `width` bits a variable, not range-coded
        self.sizes: list[int] = []  # bits of each code: 8 * bytes coded, c * width packed
        self.labels: list[int] = []
        self.tasks: list[int] = []
        self.coded_bits = 0  # the sum of sizes
        self.n_seen = 0
        self.next_refit = 64
        self.recodes = 0  # refits that recoded the buffer, and the items they recoded
        self.recoded_items = 0

    # ----------------------------------------------------------------- accounting
    @property
    def items(self) -> int:
        return len(self.blobs)

    @property
    def prior_bits(self) -> int:
        return PRIOR_BITS * self.weights.size

    @property
    def storage_bits(self) -> int:
        return self.coded_bits + self.items * self.extra_bits + self.prior_bits

    def bits_per_code(self) -> float:
        """Mean coded bits per code variable over the held items (labels and prior excluded)."""
        return self.coded_bits / max(1, self.items * self.c)

    # ----------------------------------------------------------------- writing
    def _evict(self, j: int) -> None:
        last = len(self.blobs) - 1
        self.coded_bits -= self.sizes[j]
        for seq in (self.blobs, self.raw, self.sizes, self.labels, self.tasks):
            seq[j] = seq[last]
            seq.pop()

    def _size(self, blob: bytes, raw: bool) -> int:
        return self.c * self.width if raw else 8 * len(blob)

    def _fits(self, bits: int) -> bool:
        return self.storage_bits + bits + self.extra_bits <= self.budget_bits

    def add(self, codes: np.ndarray, labels: np.ndarray, task: int) -> None:
        """Code and write a batch of codes ``(b, c)`` with their labels, under the write policy."""
        codes = np.asarray(codes, dtype=np.int64)
        hist = (codes[:, :, None] == np.arange(self.l)).sum(0)
        self.counts += hist if self.prior == "variable" else hist.sum(0, keepdims=True)
        for code, label in zip(codes, np.asarray(labels).tolist(), strict=True):
            blob, raw = encode_item(code, self._probs, self.width)
            size = self._size(blob, raw)
            self.n_seen += 1
            if not self._fits(size):
                _, dst = reservoir_slots(self.n_seen - 1, 1, self.items, self.rng)
                if not len(dst) or self.prior_bits + size + self.extra_bits > self.budget_bits:
                    continue  # not sampled into the reservoir (or larger than the whole budget)
                self._evict(int(dst[0]))
                while not self._fits(size):
                    self._evict(int(self.rng.integers(self.items)))
            for seq, v in ((self.blobs, blob), (self.raw, raw), (self.sizes, size), (self.labels, int(label)),
                           (self.tasks, int(task))):
                seq.append(v)
            self.coded_bits += size
        if self.n_seen >= self.next_refit:
            self.refit()

    def refit(self) -> None:
        """Fit the prior on every code written so far and recode the held items under it; evict
        uniformly drawn items if the recoded buffer no longer fits."""
        self.next_refit = 2 * max(self.n_seen, 32)
        weights = fit_prior(self.counts)
        if np.array_equal(weights, self.weights):
            return
        old, new = self._probs, prior_probs(weights, self.c)
        items = [encode_item(decode_item(b, r, old, self.width), new, self.width)
                 for b, r in zip(self.blobs, self.raw, strict=True)]
        self.blobs, self.raw = [b for b, _ in items], [r for _, r in items]
        self.sizes = [self._size(b, r) for b, r in items]
        self.weights, self._probs = weights, new
        self.coded_bits = sum(self.sizes)
        self.recodes += 1
        self.recoded_items += self.items
        while self.items and self.storage_bits > self.budget_bits:
            self._evict(int(self.rng.integers(self.items)))

    # ----------------------------------------------------------------- reading
    def read(self, rows: np.ndarray) -> np.ndarray:
        """Decode ``rows``: ``(n, c + 2)`` int64 of code, label, task id (BitStore's layout)."""
        out = np.empty((len(rows), self.c + 2), dtype=np.int64)
        for i, r in enumerate(np.asarray(rows).tolist()):
            out[i, : self.c] = decode_item(self.blobs[r], self.raw[r], self._probs, self.width)
            out[i, self.c], out[i, self.c + 1] = self.labels[r], self.tasks[r]
        return out

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        lengths = np.array([len(b) for b in self.blobs], dtype=np.int64)
        return {"bytes": np.frombuffer(b"".join(self.blobs), dtype=np.uint8).copy(), "lengths": lengths,
                "raw": np.array(self.raw, dtype=bool),
                "labels": np.array(self.labels, dtype=np.int64), "tasks": np.array(self.tasks, dtype=np.int64),
                "weights": self.weights.astype(np.int64), "counts": self.counts.copy(), "n_seen": self.n_seen,
                "next_refit": self.next_refit, "recodes": self.recodes, "recoded_items": self.recoded_items}

    def load_state_dict(self, state: dict) -> None:
        weights = np.asarray(state["weights"], dtype=np.uint16)
        if weights.shape != self.weights.shape:
            raise ValueError(f"checkpoint's SRM prior has shape {weights.shape}, this memory's "
                             f"{self.weights.shape} (entropy_prior differs)")
        data, ends = bytes(np.asarray(state["bytes"], dtype=np.uint8)), np.cumsum(state["lengths"])
        self.blobs = [data[s:e] for s, e in zip(np.concatenate([[0], ends[:-1]]).tolist(), ends.tolist(),
                                                  strict=True)]
        self.raw = [bool(v) for v in state["raw"]]
        self.sizes = [self._size(b, r) for b, r in zip(self.blobs, self.raw, strict=True)]
        self.labels = [int(v) for v in state["labels"]]
        self.tasks = [int(v) for v in state["tasks"]]
        self.weights, self._probs = weights, prior_probs(weights, self.c)
        self.counts = np.asarray(state["counts"], dtype=np.int64).copy()
        self.coded_bits = sum(self.sizes)
        self.n_seen, self.next_refit = int(state["n_seen"]), int(state["next_refit"])
        self.recodes, self.recoded_items = int(state["recodes"]), int(state["recoded_items"])
