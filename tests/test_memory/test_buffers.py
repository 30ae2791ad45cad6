"""Reservoir and per-task ring buffers: write policies, exact storage, budgets, round trips."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from memory import MemorySpec, memory_class
from memory.buffers import ReservoirBuffer, TaskRingBuffer

SPEC = MemorySpec((1, 28, 28), 10, 20)


def _batch(n, value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) if value is None else torch.full((n, 1, 28, 28), value)
    return x, torch.randint(0, 10, (n,), generator=g)


def test_storage_bits_are_exact():
    assert SPEC.example_bits == 6272 and SPEC.label_bits == 4 and SPEC.task_bits == 5
    r = ReservoirBuffer(SPEC, 7)
    r.observe(*_batch(5)[:1], 3, _batch(5)[1])
    assert r.items == 5 and r.storage_bits == 5 * (6272 + 4 + 5)
    ring = TaskRingBuffer(SPEC, 4)
    x, y = _batch(10)
    ring.observe(x, 2, y)
    assert ring.items == 4 and ring.storage_bits == 4 * (6272 + 4)  # the slot encodes the task


@pytest.mark.parametrize("name", ["reservoir", "task_ring"])
@pytest.mark.parametrize("budget", [10, 100, 200, 1000])
def test_for_budget_fits(name, budget):
    mem = memory_class(name).for_budget(budget, SPEC)
    for t in range(20):
        for s in range(30):
            x, y = _batch(10, seed=s)
            mem.observe(x, t, y)
    assert mem.storage_bits <= budget * SPEC.example_bits
    item = mem.item_bits(SPEC)
    assert mem.storage_bits > budget * SPEC.example_bits - SPEC.n_tasks * item  # nearly full


def test_ring_budget_spreads_the_remainder():
    ring = TaskRingBuffer.for_budget(200, SPEC)
    assert ring.caps.tolist() == [10] * 19 + [9]


def test_reservoir_stores_uint8_and_replays_floats():
    r = ReservoirBuffer(SPEC, 10)
    x, y = _batch(10)
    r.observe(x, 0, y)
    assert r.x.dtype == torch.uint8
    out = r.sample(10, generator=torch.Generator().manual_seed(0))
    assert out.x.dtype == torch.float32 and (out.x - torch.round(out.x * 255) / 255).abs().max() < 1e-6


def test_reservoir_is_uniform_over_the_stream():
    counts = np.zeros(100)
    for seed in range(300):
        r = ReservoirBuffer(MemorySpec((1, 1, 1), 10, 1), 10, seed=seed)
        for i in range(10):  # 100 examples, x encodes the index
            idx = torch.arange(10 * i, 10 * i + 10)
            r.observe((idx.float() / 255).reshape(10, 1, 1, 1), 0, idx % 10)
        counts[torch.round(r.x.flatten().float()).long().numpy()] += 1
    p = counts / 300  # each example kept with probability 10/100
    assert abs(p.mean() - 0.1) < 1e-9 and p[:50].mean() == pytest.approx(p[50:].mean(), abs=0.03)


def test_ring_keeps_the_most_recent_per_task():
    ring = TaskRingBuffer(SPEC, 5)
    for i in range(3):
        ring.observe(torch.full((4, 1, 28, 28), i / 255), 1, torch.full((4,), i))
    got = ring.sample_task(1)
    assert sorted(got.y.tolist()) == [1, 2, 2, 2, 2] and ring.tasks() == [1]  # the last 5 written
    assert (got.t == 1).all()
    assert ring.sample_task(0) is None


@pytest.mark.parametrize("name", ["reservoir", "task_ring"])
def test_state_dict_round_trip(name):
    a = memory_class(name).for_budget(50, SPEC)
    for s in range(12):
        a.observe(*_batch(10, seed=s)[:1], s % 3, _batch(10, seed=s)[1])
    b = memory_class(name).for_budget(50, SPEC)
    b.load_state_dict(a.state_dict())
    assert b.items == a.items and b.storage_bits == a.storage_bits
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(a.sample(8, generator=g1).x, b.sample(8, generator=g2).x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        ReservoirBuffer(SPEC, -1)
    with pytest.raises(ValueError, match="per_task"):
        TaskRingBuffer(SPEC, [1, 2])
    with pytest.raises(ValueError, match="budget"):
        ReservoirBuffer.for_budget(-5, SPEC)


def test_reservoir_exact_probabilities_on_an_enumerable_case():
    """Capacity 2, a stream of 4 single examples: every example must be held with probability
    2/4, and each of the 6 pairs with probability 1/6 (Vitter's algorithm R)."""
    import collections

    from memory.buffers import reservoir_slots

    trials = 60_000
    held = collections.Counter()
    pairs = collections.Counter()
    rng = np.random.default_rng(0)
    for _ in range(trials):
        slots = [None, None]
        for i in range(4):
            src, dst = reservoir_slots(i, 1, 2, rng)
            for d in dst:
                slots[int(d)] = i
        held.update(slots)
        pairs[tuple(sorted(slots))] += 1
    for i in range(4):
        assert held[i] / trials == pytest.approx(0.5, abs=0.01)
    assert len(pairs) == 6 and all(v / trials == pytest.approx(1 / 6, abs=0.01) for v in pairs.values())


def test_reservoir_slot_rules_fill_then_replace_inside_the_seen_range():
    from memory.buffers import reservoir_slots

    src, dst = reservoir_slots(0, 3, 5, np.random.default_rng(0))  # free slots: filled in order
    assert src.tolist() == [0, 1, 2] and dst.tolist() == [0, 1, 2]
    for n_seen, seed in [(3, s) for s in range(100)] + [(10, s) for s in range(200)]:
        # filling then past capacity: slots in [0, capacity), each written once, the later wins
        src, dst = reservoir_slots(n_seen, 8, 5, np.random.default_rng(seed))
        assert ((dst >= 0) & (dst < 5)).all() and len(set(dst.tolist())) == len(dst)
        rng = np.random.default_rng(seed)
        pos = n_seen + np.arange(8)
        draw = np.where(pos < 5, pos, (rng.random(8) * (pos + 1)).astype(np.int64))
        expected = {}
        for i, slot in enumerate(draw):  # the sequential rule: a later example overwrites
            if slot < 5:
                expected[int(slot)] = i
        assert dict(zip(dst.tolist(), src.tolist(), strict=True)) == expected


def _tagged(values, shape=(1, 2, 2)):
    """Images whose every pixel is value / 255 (the value is readable back from the memory)."""
    v = torch.tensor(values, dtype=torch.float32)
    return v.view(-1, 1, 1, 1).expand(len(values), *shape) / 255.0


def test_task_ring_keeps_the_most_recent_per_task_in_ring_order():
    from memory.base import MemorySpec
    from memory.buffers import TaskRingBuffer

    spec = MemorySpec((1, 2, 2), 10, 3)
    m = TaskRingBuffer(spec, [3, 2, 0])
    m.observe(_tagged([1, 2]), 0, torch.tensor([1, 2]))
    m.observe(_tagged([3, 4]), 0, torch.tensor([3, 4]))  # wraps: slot 0 <- 4
    m.observe(_tagged([5, 6, 7, 8]), 1, torch.tensor([5, 6, 7, 8]))  # more than fit: the last 2
    m.observe(_tagged([9]), 2, torch.tensor([9]))  # no slot for task 2
    assert m.x[0, :, 0, 0, 0].tolist() == [4, 2, 3] and m.y[0].tolist() == [4, 2, 3]
    assert sorted(m.y[1, :2].tolist()) == [7, 8]
    assert m.tasks() == [0, 1] and [m.task_items(t) for t in range(3)] == [3, 2, 0]
    assert m.items == 5 and m.storage_bits == 5 * (4 * 8 + 4)  # 4 pixels at 8 bits + a 4-bit label
    full = m.sample_task(0)
    assert torch.equal(full.x, _tagged([4, 2, 3])) and (full.t == 0).all()  # exactly value / 255
    assert m.sample_task(2) is None and len(m.sample_task(0, 2, generator=torch.Generator().manual_seed(0)).y) == 2
    x, y, mask = m.padded([0, 1])
    assert x.shape == (2, 3, 1, 2, 2) and mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert torch.equal(x[0], _tagged([4, 2, 3])) and torch.equal(x[1, :2], _tagged(m.y[1, :2].tolist()))


def test_task_ring_sample_from_covers_exactly_the_chosen_tasks():
    from memory.base import MemorySpec
    from memory.buffers import TaskRingBuffer

    spec = MemorySpec((1, 2, 2), 10, 3)
    m = TaskRingBuffer(spec, 2)
    for t, vals in enumerate([[1, 2], [3, 4], [5]]):
        m.observe(_tagged(vals), t, torch.tensor(vals))
    batch = m.sample_from([0, 2], 3000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch.x, _tagged(batch.y.tolist()))  # exactly value / 255, pixel for pixel
    assert set(batch.y.tolist()) == {1, 2, 5}
    assert torch.equal(batch.t, torch.where(batch.y == 5, 2, 0))
    counts = torch.bincount(batch.y, minlength=6)[[1, 2, 5]].float() / 3000  # uniform over 3 items
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.03)
    assert m.sample_from([], 5) is None


def test_budgets_spread_items_over_tasks_first_tasks_taking_the_remainder():
    from memory.base import MemorySpec
    from memory.buffers import ReservoirBuffer, TaskRingBuffer

    spec = MemorySpec((1, 28, 28), 10, 3)
    ring = TaskRingBuffer.for_budget(10, spec)  # 10 * 6272 bits / (6272 + 4) = 9 items (9.99 -> 9)
    assert ring.caps.tolist() == [3, 3, 3]
    ring = TaskRingBuffer.for_budget(11, spec)  # 10 items: 4, 3, 3
    assert ring.caps.tolist() == [4, 3, 3]
    res = ReservoirBuffer.for_budget(10, spec)  # + 2-bit task ids: 6272 * 10 // 6278 = 9
    assert res.capacity == 9 and TaskRingBuffer.default(spec).caps.tolist() == [256] * 3
    assert ReservoirBuffer.default(spec).capacity == 256
    with pytest.raises(ValueError, match="per_task must be >= 0"):
        TaskRingBuffer(spec, [1, -1, 1])
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        ReservoirBuffer(spec, -1)


def test_reservoir_edges_zero_capacity_one_item_and_exact_pixels():
    from memory.base import MemorySpec
    from memory.buffers import ReservoirBuffer

    spec = MemorySpec((1, 2, 2), 10, 2)
    empty = ReservoirBuffer(spec, 0)  # a budget too small for one item is a valid, empty memory
    empty.observe(_tagged([1, 2]), 0, torch.tensor([1, 2]))
    assert empty.items == 0 and empty.sample(3) is None
    m = ReservoirBuffer(spec, 4)
    m.observe(_tagged([7]), 1, torch.tensor([7]))
    one = m.sample(5, generator=torch.Generator().manual_seed(0))
    assert one is not None and one.y.tolist() == [7] * 5 and one.t.tolist() == [1] * 5
    assert torch.equal(one.x, _tagged([7] * 5))  # exactly value / 255
    m.observe(_tagged([9]), 1, torch.tensor([9]))
    both = m.sample(400, generator=torch.Generator().manual_seed(0))
    assert set(both.y.tolist()) == {7, 9}  # every held item can be drawn, the first one too


def test_task_ring_default_takes_its_size_from_per_task_and_refuses_it_with_a_budget():
    spec = MemorySpec((1, 2, 2), 10, 3)
    assert TaskRingBuffer.default(spec).caps.tolist() == [256, 256, 256]
    assert TaskRingBuffer.default(spec, per_task=8).caps.tolist() == [8, 8, 8]
    with pytest.raises(ValueError, match="either a budget or memory.per_task"):
        TaskRingBuffer.for_budget(10, spec, per_task=8)


@pytest.mark.parametrize("name", ["reservoir", "class_balanced", "task_ring"])
def test_a_state_dict_is_a_snapshot_not_a_view(name):
    """A state taken, then more writes, then the state loaded back: the buffer holds what it held
    when the state was taken (its counters and its tensors alike)."""
    spec = MemorySpec((1, 2, 2), 10, 2)
    m = memory_class(name)(spec, 3) if name != "task_ring" else TaskRingBuffer(spec, 3)
    m.observe(torch.full((3, 1, 2, 2), 0.25), 0, torch.tensor([1, 2, 3]))
    before = m.sample_all() if hasattr(m, "sample_all") else m.sample(64, generator=torch.Generator().manual_seed(0))
    state = m.state_dict()
    for _ in range(5):  # enough later writes to replace what was held (a full buffer, a full ring)
        m.observe(torch.ones(4, 1, 2, 2), 0, torch.tensor([7, 7, 7, 7]))
    m.load_state_dict(state)
    after = m.sample_all() if hasattr(m, "sample_all") else m.sample(64, generator=torch.Generator().manual_seed(0))
    assert m.items == 3
    assert torch.equal(before.y, after.y) and torch.equal(before.x, after.x)


@pytest.mark.parametrize("make,words", [
    (lambda: MemorySpec((1, 28, 28), 0, 5), "n_classes: got 0"),
    (lambda: MemorySpec((1, 28), 10, 5), "image_shape"),
    (lambda: MemorySpec((1, 28, 28), 10, "5"), "MemorySpec"),
    (lambda: ReservoirBuffer.for_budget(float("nan"), SPEC), "budget: got nan"),
    (lambda: ReservoirBuffer.for_budget(float("inf"), SPEC), "budget: got inf"),
    (lambda: ReservoirBuffer(SPEC, 4).sample(-1), "n (items to sample): got -1"),
    (lambda: TaskRingBuffer(SPEC, 4).observe(torch.zeros(2, 1, 28, 28), -1, torch.tensor([1, 2])), "task id"),
])
def test_memories_used_directly_refuse_bad_arguments_in_one_line(make, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        make()


def test_a_spec_takes_integers_of_any_kind():
    s = MemorySpec(torch.Size([1, 28, 28]), np.int64(10), np.int32(5))
    assert s.image_shape == (1, 28, 28) and type(s.n_classes) is int and s.n_tasks == 5
