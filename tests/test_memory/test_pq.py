"""REMIND's product-quantised memory: the quantiser's round trip, the backends, bits, bad input."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from memory import product_quantiser as pqmod
from memory.base import MemorySpec
from memory.pq import (
    PQMemory,
    evict_largest_class,
    fit_codebooks,
    from_vectors,
    kmeans,
    pq_decode,
    pq_encode,
    to_vectors,
)

SPEC = MemorySpec(image_shape=(1, 28, 28), n_classes=10, n_tasks=2)
HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _data(n=600, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, d, generator=g) * 3
    return centres[torch.randint(0, 8, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)


def test_vectors_round_trip_for_maps_and_vectors():
    z = torch.randn(3, 6, 4, 5)
    assert torch.equal(from_vectors(to_vectors(z), (6, 4, 5)), z)
    assert to_vectors(z).shape == (3 * 20, 6)
    assert torch.equal(to_vectors(z)[1], z[0, :, 0, 1])
    v = torch.randn(4, 7)
    assert torch.equal(from_vectors(to_vectors(v), (7,)), v)


def _sse(x, c):
    return float((x - c[torch.cdist(x, c).argmin(1)]).pow(2).sum(1).mean())


def test_kmeans_lowers_the_objective_and_finds_separated_clusters():
    x = _data()
    init = kmeans(x, 8, 0, torch.Generator().manual_seed(0))  # zero iterations: the initial centroids
    fitted = kmeans(x, 8, 25, torch.Generator().manual_seed(0))
    assert _sse(x, fitted) < _sse(x, init)
    two = torch.cat([torch.zeros(50, 3), torch.full((50, 3), 10.0)]) + 0.1 * torch.randn(100, 3)
    c = kmeans(two, 2, 10, torch.Generator().manual_seed(0))
    assert _sse(two, c) < 3 * 0.1**2 * 2


@pytest.mark.parametrize("backend", ["kmeans", pytest.param("faiss", marks=pytest.mark.skipif(
    not HAS_FAISS, reason="faiss-cpu not installed (pip install 'cl-env[pq]')"))])
def test_round_trip_error_small_and_decreasing_with_m(backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 16, generator=g) @ (torch.eye(16) + 0.3 * torch.randn(16, 16, generator=g))
    errs = []
    for m in (1, 2, 4, 8):
        cb = fit_codebooks(x, m, 4, backend, seed=0)
        assert cb.shape == (m, 16, 16 // m)
        codes = pq_encode(x, cb)
        assert codes.shape == (len(x), m) and codes.dtype == torch.uint8
        errs.append(float((pq_decode(codes, cb) - x).pow(2).mean() / x.pow(2).mean()))
    assert errs[-1] < 0.15, errs  # 16 centroids per 2-d sub-space
    assert all(a > b for a, b in zip(errs[:-1], errs[1:], strict=True)), errs


@pytest.mark.skipif(not HAS_FAISS, reason="faiss-cpu not installed (pip install 'cl-env[pq]')")
def test_our_encoder_matches_faiss_codes():
    import faiss

    x = _data(d=16).numpy()
    pq = faiss.ProductQuantizer(16, 4, 8)  # 8-bit codes: one byte each, as ours
    pq.cp.min_points_per_centroid = 1
    pq.train(x)
    cb = torch.from_numpy(faiss.vector_to_array(pq.centroids).reshape(4, 256, 4))
    assert np.array_equal(pq_encode(torch.from_numpy(x), cb).numpy(), pq.compute_codes(x))


def test_fit_is_deterministic_under_its_seed():
    x = _data()
    assert torch.equal(fit_codebooks(x, 4, 3, seed=1), fit_codebooks(x, 4, 3, seed=1))


def test_too_few_training_vectors_is_refused():
    with pytest.raises(ValueError, match="at least 256 training vectors"):
        fit_codebooks(torch.randn(100, 8), 2, 8)


def test_eviction_takes_a_slot_of_the_largest_class_counting_the_incoming_one():
    labels = np.array([0, 1, 1, 2, 1, 0])
    rng = np.random.default_rng(0)
    assert all(labels[evict_largest_class(labels, 2, rng)] == 1 for _ in range(20))
    # an incoming 1 makes class 1 the largest: it or one of the held 1s leaves
    picks = [evict_largest_class(labels, 1, rng) for _ in range(200)]
    assert set(picks) == {-1, 1, 2, 4}


class _Ctx:
    """A learner stand-in exposing the two documented methods a feature memory calls."""

    def __init__(self, d=20):
        self.lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, d), torch.nn.ReLU())

    def split(self, layer):
        if layer != "hidden1":
            raise ValueError(f"layer {layer!r} is not a cut point; its cut points: hidden1")
        return self.lin, None

    @torch.no_grad()
    def features(self, x, layer):
        return self.lin(x)


def test_bits_codebook_overhead_and_capacity():
    budget = 60 * 784 * 8
    mem = PQMemory(SPEC, budget, m=4, nbits=8)
    ctx = _Ctx(d=20)
    mem.bind(ctx)
    assert mem.codebook_overhead == 256 * 20 * 16
    assert mem.item_bits == 4 * 8 + 4 + 1
    assert mem.capacity == (budget - 256 * 20 * 16) // 37
    x = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(300) % 10
    mem.observe(x, 0, y, ctx)
    assert mem.items == 300 and mem.storage_bits == 300 * (784 * 8 + 5) and mem.overhead_bits == 0
    mem.fit(ctx)
    assert mem.fitted and mem.items == 300 and len(mem.base_x) == 0
    assert mem.storage_bits == 300 * 37 and mem.overhead_bits == 256 * 20 * 16
    assert mem.storage_bits + mem.overhead_bits <= budget
    batch = mem.sample(7, generator=torch.Generator().manual_seed(0))
    assert batch.layer == "hidden1" and batch.x.shape == (7, 20)
    z = ctx.features(x, "hidden1")
    rel = (mem.reconstruct(z)[0] - z).pow(2).mean() / z.pow(2).mean()
    assert rel < 0.2


def test_bad_input_is_one_clear_error(monkeypatch):
    ctx = _Ctx(d=20)
    with pytest.raises(ValueError, match=r"m=3 does not divide the feature size 20 .* \[1, 2, 4, 5, 10, 20\]"):
        PQMemory(SPEC, 60 * 784 * 8, m=3).bind(ctx)
    with pytest.raises(ValueError, match="budget too small for the pq codebook"):
        PQMemory(SPEC, 10 * 784 * 8, m=4).bind(ctx)
    with pytest.raises(ValueError, match="its cut points: hidden1"):
        PQMemory(SPEC, 60 * 784 * 8, layer="stage9").bind(ctx)
    with pytest.raises(ValueError, match="backend must be one of"):
        PQMemory(SPEC, 1000, backend="annoy")
    monkeypatch.setattr(pqmod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'cl-env\[pq\]'"):
        PQMemory(SPEC, 1000, backend="faiss")


def test_full_memory_replaces_items_of_the_largest_class():
    ctx = _Ctx(d=20)
    codebook = 256 * 20 * 16
    mem = PQMemory(SPEC, codebook + 30 * 37, m=4)  # room for exactly 30 items beside the codebook
    mem.bind(ctx)
    assert mem.capacity == 30
    g = torch.Generator().manual_seed(0)
    mem.observe(torch.rand(300, 1, 28, 28, generator=g), 0, torch.zeros(300, dtype=torch.long), ctx)
    mem.fit(ctx)
    assert mem.items == 30 and (mem.y[:30] == 0).all()
    mem.observe(torch.rand(20, 1, 28, 28, generator=g), 1, torch.ones(20, dtype=torch.long), ctx)
    assert mem.items == 30 and mem.storage_bits + mem.overhead_bits <= codebook + 30 * 37
    assert int((mem.y == 1).sum()) == 15 and int((mem.y == 0).sum()) == 15  # balanced by REMIND's rule


def test_base_phase_holds_at_most_base_limit_and_survives_a_checkpoint():
    ctx = _Ctx(d=20)
    mem = PQMemory(SPEC, 60 * 784 * 8, m=4, base_limit=50)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        mem.observe(torch.rand(10, 1, 28, 28, generator=g), 0, torch.randint(0, 10, (10,), generator=g), ctx)
    assert mem.items == 50 and mem.storage_bits == 50 * (784 * 8 + 5) and mem.counters()["pq_base_examples_seen"] == 300
    other = PQMemory(SPEC, 60 * 784 * 8, m=4, base_limit=50)
    other.load_state_dict(mem.state_dict(), ctx)
    for a, b in zip(mem.base_examples(), other.base_examples(), strict=True):
        assert torch.equal(a, b)
    other.observe(torch.rand(10, 1, 28, 28), 0, torch.zeros(10, dtype=torch.long), ctx)  # still writable
    assert other.items == 50
