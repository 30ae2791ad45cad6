"""Distilled addressable memories: the budget formula, addressing, and BPTT against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from memory import addressable as A
from memory.base import MemorySpec


def test_rows_per_class_reference_formula():
    # REFERENCE.md: CIFAR-10, ipc 1, 16 bases, ds 2 -> 115 rows per class
    assert A.rows_per_class(1, (3, 32, 32), 10, 16, 2) == 115
    # MNIST, ipc 10, 16 bases, ds 2: floor((10*784*10 - 16*196) / 160)
    assert A.rows_per_class(10, (1, 28, 28), 10, 16, 2) == (78400 - 3136) // 160
    with pytest.raises(ValueError, match="fewer bases"):
        A.rows_per_class(0.01, (1, 28, 28), 10, 16, 2)


def test_the_budget_is_met_and_counted_exactly():
    for ipc in (1, 10):
        rows = A.rows_per_class(ipc, (1, 28, 28), 10, 8, 2)
        mem = A.AddressableMemories((1, 28, 28), 10, 8, rows, 2)
        assert mem.floats == A.floats_for(8, rows, 10, (1, 28, 28), 2) <= ipc * 784 * 10
        assert mem.floats > ipc * 784 * 10 - 10 * 8  # less than one row per class left over


def test_one_hot_addressing_is_a_row_times_the_upsampled_bases():
    g = torch.Generator().manual_seed(0)
    mem = A.AddressableMemories((1, 28, 28), 4, 3, 5, ds=2, generator=g)
    x, y = mem.recall_classes()
    assert x.shape == (20, 1, 28, 28) and y.tolist() == [k for k in range(4) for _ in range(5)]
    up = F.interpolate(mem.bases, size=(28, 28), mode="bilinear", align_corners=False).flatten(1)
    assert mem.bases.shape == (3, 1, 14, 14)
    k, i = 2, 3
    assert torch.allclose(x[k * 5 + i].flatten(), mem.addressing[i, k] @ up, atol=1e-6)


def test_general_queries_combine_linearly():
    mem = A.AddressableMemories((1, 28, 28), 4, 3, 2, generator=torch.Generator().manual_seed(1))
    e = torch.eye(4)
    q = 0.3 * e[0] + 0.7 * e[3]
    out = mem.recall(q[None])[0]
    expect = 0.3 * mem.recall(e[:1])[0] + 0.7 * mem.recall(e[3:4])[0]
    assert torch.allclose(out, expect, atol=1e-6)


def _tiny_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    params0 = {k: v.detach() for k, v in model.named_parameters()}
    x_syn = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    y_syn = torch.tensor([0, 0, 1, 1, 2, 2])
    x_real = torch.rand(9, 1, 4, 4, dtype=torch.float64)
    y_real = torch.arange(9) % 3
    unroll = A.Unroll(steps=4, lr=0.3, momentum=0.9, batch_per_class=1)
    batches = A.minibatches(2, 3, unroll, torch.Generator().manual_seed(0))
    return model, params0, x_syn, y_syn, x_real, y_real, unroll, batches


def _outer_loss(model, params0, x_syn, y_syn, x_real, y_real, unroll, batches):
    """The unrolled objective with autograd's graph kept through every step (the reference)."""
    theta = {k: v.clone().requires_grad_(True) for k, v in params0.items()}
    mom = {k: torch.zeros_like(v) for k, v in theta.items()}
    for b in batches:
        loss = F.cross_entropy(functional_call(model, theta, (x_syn[b],)), y_syn[b])
        g = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
        mom = {k: unroll.momentum * mom[k] + gk for k, gk in zip(theta, g, strict=True)}
        theta = {k: theta[k] - unroll.lr * mom[k] for k in theta}
    return F.cross_entropy(functional_call(model, theta, (x_real,)), y_real)


def test_hand_written_reverse_pass_matches_autograd_and_finite_differences():
    model, params0, x_syn, y_syn, x_real, y_real, unroll, batches = _tiny_problem()
    assert len({tuple(b.tolist()) for b in batches}) > 1  # minibatches differ between steps
    grad, loss = A.bptt_gradient(model, params0, x_syn, y_syn, x_real, y_real, unroll, batches)
    # autograd through the whole unrolled graph
    xs = x_syn.clone().requires_grad_(True)
    ref_loss = _outer_loss(model, params0, xs, y_syn, x_real, y_real, unroll, batches)
    ref = torch.autograd.grad(ref_loss, xs)[0]
    assert loss == pytest.approx(float(ref_loss), rel=1e-12)
    assert torch.allclose(grad, ref, rtol=1e-8, atol=1e-12)
    # central finite differences on a few coordinates
    h = 1e-6
    for idx in [(0, 0, 0, 0), (3, 0, 2, 1), (5, 0, 3, 3)]:
        plus, minus = x_syn.clone(), x_syn.clone()
        plus[idx] += h
        minus[idx] -= h
        fd = (_outer_loss(model, params0, plus, y_syn, x_real, y_real, unroll, batches)
              - _outer_loss(model, params0, minus, y_syn, x_real, y_real, unroll, batches)) / (2 * h)
        assert float(grad[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)


def test_distillation_lowers_the_real_loss():
    torch.manual_seed(0)
    x = torch.rand(60, 1, 8, 8)
    y = torch.arange(60) % 3
    x[y == 1, :, :4] += 0.5   # separable classes
    x[y == 2, :, 4:] += 0.5
    x = x.clamp(0, 1)
    mem = A.AddressableMemories((1, 8, 8), 3, 2, 2, generator=torch.Generator().manual_seed(0))

    def model_fn():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    losses = A.distill(mem, x, y, model_fn, A.Unroll(steps=5, lr=0.5), A.Distillation(iterations=30), seed=0)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_memory_distils_each_task_into_its_share_and_recalls_it():
    spec = MemorySpec((1, 8, 8), 3, 2)
    mem = A.Addressable(spec, total_bits=40 * (64 * 8), n_bases=2, iterations=2, inner_steps=2, seed=0,
                        stream_every=0)
    mem.model_fn = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    assert mem.capacity == 40 * 512 // (512 + 2)
    x, y = torch.rand(50, 1, 8, 8), torch.arange(50) % 3
    mem.observe(x, 0, y)
    assert mem.storage_bits == mem.capacity * mem.slot_bits <= mem.total_bits
    mem.end_task(0)
    assert mem.tasks() == [0] and mem.storage_bits == mem.task_bits <= mem.total_bits // 2
    assert mem.task_bits == 32 * (mem.memories[0].bases.numel() + mem.memories[0].addressing.numel()) + 3
    assert mem.items == mem.rows * 3
    batch = mem.sample_task(0)
    assert batch.x.shape == (mem.rows * 3, 1, 8, 8) and batch.x.min() >= 0 and batch.x.max() <= 1
    state = mem.state_dict()
    other = A.Addressable(spec, total_bits=40 * (64 * 8), n_bases=2, seed=5)
    other.load_state_dict(state)
    assert torch.equal(other.sample_task(0).x, batch.x)


def test_a_diverging_unroll_is_skipped_not_written():
    x, y = torch.rand(30, 1, 8, 8), torch.arange(30) % 3
    mem = A.AddressableMemories((1, 8, 8), 3, 2, 2, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in mem.parameters()]

    def model_fn():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    losses = A.distill(mem, x, y, model_fn, A.Unroll(steps=3, lr=float("nan")), A.Distillation(iterations=2), seed=0)
    assert all(not torch.isfinite(torch.tensor(v)) for v in losses)
    assert all(torch.equal(p, q) for p, q in zip(mem.parameters(), before, strict=True))


def _flat():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


def test_streamed_distillation_steps_on_the_batch_and_the_buffer_within_the_budget(monkeypatch):
    """Remember the Past §5.2: "distillation with both buffer samples and streamed samples"; the
    streaming task's share is reserved, so storage never exceeds the budget."""
    spec = MemorySpec((1, 8, 8), 3, 2)
    total = 40 * (64 * 8)
    mem = A.Addressable(spec, total_bits=total, n_bases=2, iterations=3, inner_steps=2, seed=0, stream_every=2)
    mem.model_fn = _flat
    assert mem.capacity == (total - mem.task_bits) // mem.slot_bits  # one share reserved
    pools = []
    real_step = A.Distiller.step

    def spy(self, x, y):
        pools.append((x.clone(), y.clone()))
        return real_step(self, x, y)

    monkeypatch.setattr(A.Distiller, "step", spy)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(10, 1, 8, 8, generator=g), torch.arange(10) % 3) for _ in range(6)]
    for x, y in batches:
        mem.observe(x, 0, y)
        assert mem.storage_bits <= total
    assert len(pools) == 3 and mem.working is not None  # batches 2, 4, 6
    # each streamed step sees the whole buffer plus the incoming batch (pixels as stored: 8-bit)
    last_x, last_y = pools[-1]
    assert len(last_y) == len(mem.buf_y) + 10
    assert torch.equal(last_x[-10:], A.to_uint8(batches[-1][0]).float() / 255)
    mid = mem.state_dict()  # mid-task: the working memories and their optimiser travel
    buffered = len(mem.buf_y)
    mem.end_task(0)
    assert len(pools) == 3 + 3 and len(pools[-1][1]) == buffered  # then `iterations` steps on the buffer
    assert mem.tasks() == [0] and mem.working is None and mem.storage_bits == mem.task_bits
    # resume from mid-task: the same memories at the end
    other = A.Addressable(spec, total_bits=total, n_bases=2, iterations=3, inner_steps=2, seed=0, stream_every=2)
    other.model_fn = _flat
    other.load_state_dict(mid)
    assert other.working is not None and other.working.it == 3
    other.end_task(0)
    assert torch.equal(other.memories[0].addressing, mem.memories[0].addressing)


def test_every_class_is_reachable_with_fewer_bases_than_classes():
    """4 bases for 10 classes: the classes without a base of their own start from the mean of
    the bases (not near-blank), and the bases are seeded from randomly chosen classes."""
    x = torch.rand(100, 1, 8, 8) * 0.5 + 0.25
    y = torch.arange(100) % 10
    seeded = set()
    for seed in range(4):
        init, labels = A.bases_from_data(x, y, 4, torch.Generator().manual_seed(seed))
        seeded |= set(labels.tolist())
        mem = A.AddressableMemories((1, 8, 8), 10, 4, 3, generator=torch.Generator().manual_seed(seed),
                                    init=init, init_labels=labels)
        with torch.no_grad():
            imgs, lab = mem.recall_classes()
        per_class = imgs.view(10, 3, -1).mean(-1).mean(1)  # mean pixel of each class's slots
        assert bool((per_class > 0.2).all()), per_class  # the data's mean is 0.5
    assert len(seeded) > 4  # not always classes 0-3
    # and every class's addressing rows receive a gradient from the distillation loss
    mem = A.AddressableMemories((1, 8, 8), 10, 4, 3, generator=torch.Generator().manual_seed(0),
                                init=init, init_labels=labels)
    d = A.Distiller(mem, lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), A.Unroll(steps=2, lr=0.1),
                    A.Distillation(iterations=1, real_per_class=4), seed=0)
    before = mem.addressing.detach().clone()
    d.step(x, y)
    moved = (mem.addressing.detach() - before).abs().sum(dim=(0, 2))
    assert bool((moved > 0).all()), moved


def test_bases_keep_full_resolution_on_permuted_streams():
    spatial = MemorySpec((1, 28, 28), 10, 20)
    permuted = MemorySpec((1, 28, 28), 10, 20, spatial=False)
    assert A.Addressable(spatial, total_bits=800 * 6272).ds == 2
    assert A.Addressable(permuted, total_bits=800 * 6272).ds == 1
    assert A.Addressable(permuted, total_bits=800 * 6272, ds=2).ds == 2
    # a share too small for 4 full-resolution bases (MANY: 100 tasks, budget 800) goes to half resolution
    many = MemorySpec((1, 28, 28), 10, 100, spatial=False)
    small = A.Addressable(many, total_bits=800 * 6272)
    assert small.ds == 2 and small.n_bases >= A.MIN_BASES
    assert A.Addressable(many, total_bits=800 * 6272, ds=1).n_bases == 1   # what the old default gave
    assert A.Addressable(many, total_bits=8000 * 6272).ds == 1
    from agents.base import StreamInfo
    from cl_env import make_stream

    kw = {"n_tasks": 2, "train_per_task": 20}
    assert not StreamInfo.from_stream(make_stream("MNISTPermutations-v0", **kw)).memory_spec("cpu").spatial
    assert StreamInfo.from_stream(make_stream("MNISTRotations-v0", **kw)).memory_spec("cpu").spatial


def test_a_task_with_no_free_room_keeps_its_streamed_memories():
    """The last task's share leaves no room for a buffer: its memories come from the streamed
    batches alone, and are kept."""
    spec = MemorySpec((1, 8, 8), 3, 2)
    mem = A.Addressable(spec, total_bits=40 * (64 * 8), n_bases=2, iterations=1, inner_steps=2, seed=0)
    mem.model_fn = _flat
    mem.total_bits = 2 * mem.task_bits  # exactly two shares: no free room while task 1 streams
    x, y = torch.rand(10, 1, 8, 8), torch.arange(10) % 3
    for _ in range(2):
        mem.observe(x, 0, y)
    mem.end_task(0)
    for _ in range(4):
        mem.observe(x, 1, y)
    assert mem.capacity == 0 and mem.buf_x == [] and mem.working is not None
    mem.end_task(1)
    assert mem.tasks() == [0, 1] and mem.storage_bits == 2 * mem.task_bits
