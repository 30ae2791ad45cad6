"""The product quantiser of the ``pq`` memory as pure functions (Jégou, Douze & Schmid 2011,
"Product Quantization for Nearest Neighbor Search"; REMIND's use of it): fitting codebooks with
faiss-cpu or a seeded torch k-means, encoding, decoding, the layout of feature maps as vectors,
and REMIND's replacement rule."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import torch

BACKENDS = ("kmeans", "faiss")


def to_vectors(z: torch.Tensor) -> torch.Tensor:
    """``(n, C)`` or ``(n, C, *spatial)`` features -> ``(n * S, C)`` vectors, one per position."""
    if z.ndim == 2:
        return z
    return z.flatten(2).transpose(1, 2).reshape(-1, z.shape[1])


def from_vectors(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`to_vectors` for features of per-item ``shape``."""
    if len(shape) == 1:
        return v.reshape(-1, *shape)
    c, spatial = shape[0], shape[1:]
    return v.reshape(-1, math.prod(spatial), c).transpose(1, 2).reshape(-1, *shape)


def argmin_last(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmin(-1)`` (the first minimum on ties, as torch's); through NumPy on the CPU,
    whose reduction is 10-20x faster there for these small arrays (measured: 10 us against
    200 us for ``(10, 10, 256)``)."""
    if scores.device.type == "cpu":
        return torch.from_numpy(scores.detach().numpy().argmin(-1))
    return scores.argmin(-1)


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means of the rows of ``x`` into ``k`` centroids (``(k, d)``).

    Initialised on ``k`` distinct rows drawn with ``generator`` (as faiss does); a centroid left
    empty by an iteration moves to a row drawn at random.
    """
    n = len(x)
    c = x[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(iters):
        assign = argmin_last(torch.cdist(x, c))
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        empty = counts == 0
        c = torch.where(empty[:, None], c, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            c[empty] = x[torch.randint(0, n, (int(empty.sum()),), generator=generator)]
    return c


def fit_codebooks(x: torch.Tensor, m: int, nbits: int, backend: str = "kmeans", seed: int = 0,
                  iters: int = 25) -> torch.Tensor:
    """Fit a product quantiser on the rows of ``x`` (``(n, C)``): ``(m, 2**nbits, C // m)``
    float32 centroids, sub-vector ``j`` being columns ``[j * C/m, (j + 1) * C/m)``.

    ``backend="faiss"`` trains ``faiss.ProductQuantizer(C, m, nbits)`` (``seed`` and ``iters``
    set on its clustering parameters, one thread); ``"kmeans"`` runs :func:`kmeans` per sub-space.
    """
    n, d = x.shape
    k = 2**nbits
    if d % m:
        raise ValueError(f"m={m} does not divide the feature size {d}")
    if n < k:
        raise ValueError(f"the product quantiser needs at least {k} training vectors for {k} centroids, "
                         f"got {n}: lengthen the base phase or lower memory.nbits")
    x = x.detach().float().cpu()
    if backend == "faiss":
        faiss = require_faiss()
        faiss.omp_set_num_threads(1)
        pq = faiss.ProductQuantizer(d, m, nbits)
        pq.cp.seed, pq.cp.niter, pq.cp.min_points_per_centroid = int(seed), int(iters), 1
        pq.train(np.ascontiguousarray(x.numpy()))
        return torch.from_numpy(faiss.vector_to_array(pq.centroids).reshape(m, k, d // m).copy())
    if backend != "kmeans":
        raise ValueError(f"memory.backend must be one of {BACKENDS}, got {backend!r}")
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([kmeans(sub.contiguous(), k, iters, gen) for sub in x.split(d // m, dim=1)])


def pq_encode(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(n, C)`` vectors -> ``(n, m)`` codes: each sub-vector's nearest centroid (L2).

    The distance is expanded as faiss computes it, ``||c||^2 - 2 <x, c>`` (``||x||^2`` does not
    change the argmin), one batched matrix product over the ``m`` sub-spaces."""
    m, k, ds = centroids.shape
    cent = centroids.to(x.device)
    subs = x.float().reshape(len(x), m, ds).transpose(0, 1)  # (m, n, ds)
    scores = cent.pow(2).sum(2)[:, None, :] - 2 * torch.bmm(subs, cent.transpose(1, 2))  # (m, n, k)
    return argmin_last(scores).T.to(torch.uint8 if k <= 256 else torch.int64)


def pq_decode(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pq_encode`: ``(n, m)`` codes -> ``(n, C)`` reconstructed vectors."""
    m = centroids.shape[0]
    cent = centroids.to(codes.device)
    parts = cent[torch.arange(m, device=codes.device)[None, :], codes.long()]  # (n, m, ds)
    return parts.reshape(len(codes), -1)


def require_faiss():
    """The ``faiss`` module, or one clear error naming the extra that installs it."""
    if importlib.util.find_spec("faiss") is None:
        raise ValueError("memory.backend='faiss' needs faiss-cpu, which is not installed: "
                         "pip install 'cl-env[pq]' (or pip install faiss-cpu), or --set memory.backend=kmeans")
    import faiss

    return faiss


def evict_largest_class(labels: np.ndarray, incoming: int, rng: np.random.Generator) -> int:
    """REMIND's replacement when the memory is full (its ``fit_incremental_batch``): the incoming
    example of class ``incoming`` joins, then one uniformly drawn item of the class holding the
    most (the incoming one included; ties between classes broken at random) leaves.

    Returns:
        The slot the incoming example overwrites, or -1 when it is the one that leaves.
    """
    counts = np.bincount(np.append(labels, incoming))
    largest = np.flatnonzero(counts == counts.max())
    victim = largest[rng.integers(len(largest))]
    slots = np.flatnonzero(labels == victim)
    pick = int(rng.integers(len(slots) + (victim == incoming)))
    return int(slots[pick]) if pick < len(slots) else -1
