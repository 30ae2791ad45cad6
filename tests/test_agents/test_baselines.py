"""The baselines' key mechanisms on hand-checked inputs: DER's stored logits, ER-ACE's masked
incoming loss, MIR's interference score and retrieval, GDumb's balancing and retraining, SI's
path integral, MAS's importance; their storage accounting."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agents import StreamInfo, agent_class, run
from agents.importance import mas_importance, path_integral_step, si_importance
from agents.registry import build_memory
from agents.replay import ace_incoming_loss, interference_scores
from cl_env import make_stream
from memory.base import MemorySpec
from memory.buffers import ClassBalancedBuffer, LogitReservoir, ReservoirBuffer, balanced_slot

SPEC = MemorySpec((1, 28, 28), 10, 5)


@pytest.fixture(scope="module")
def info():
    return StreamInfo.from_stream(make_stream("SplitMNIST-v0", train_per_class=20))


def _agent(name, info, budget=20, settings=None, seed=0):
    mem = build_memory(name, None, budget, info.memory_spec("cpu"), seed=seed) if name not in ("si", "mas") else None
    return agent_class(name)(info, mem, settings or {}, seed=seed)


# ----------------------------------------------------------------------------- DER / DER++
def test_logit_reservoir_stores_the_logits_given_and_counts_their_bits():
    mem = LogitReservoir(SPEC, capacity=4, seed=0)
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    z = torch.randn(3, 10)
    mem.observe(x, 0, y, logits=z)
    batch = mem.sample(50, generator=torch.Generator().manual_seed(0))
    for i in range(50):  # each replayed item carries the logits it was written with
        j = int((y == batch.y[i]).nonzero())
        assert torch.equal(batch.extras["logits"][i], z[j])
    assert LogitReservoir.item_bits(SPEC) == ReservoirBuffer.item_bits(SPEC) + 32 * 10
    assert mem.storage_bits == 3 * (6272 + 4 + 3 + 320)
    budget = LogitReservoir.for_budget(200, SPEC)
    assert budget.capacity == 200 * 6272 // (6272 + 4 + 3 + 320) < ReservoirBuffer.for_budget(200, SPEC).capacity
    with pytest.raises(ValueError, match="logits"):
        mem.observe(x, 0, y)


def test_der_stores_the_pre_step_logits_and_its_loss_is_ce_plus_alpha_mse(info):
    agent = _agent("derpp", info, settings={"alpha": 0.7, "beta": 0.3})
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 2
    before = copy.deepcopy(agent.model)
    logits = agent.forward(x, None)
    agent.learn(x, None, y, logits)
    assert torch.allclose(agent.memory.logits[:10], before(x))  # written with the model before its step
    # the loss once the memory holds items: recomputed by hand from the same draws
    x2, y2 = torch.rand(10, 1, 28, 28), torch.arange(10) % 2
    gen_state = agent.generator.get_state()
    model = copy.deepcopy(agent.model)
    g = torch.Generator()
    g.set_state(gen_state)
    m1 = agent.memory.sample(10, generator=g)
    m2 = agent.memory.sample(10, generator=g)
    expect = (F.cross_entropy(model(x2), y2) + 0.7 * F.mse_loss(model(m1.x), m1.extras["logits"])
              + 0.3 * F.cross_entropy(model(m2.x), m2.y))
    expect.backward()
    out = agent.learn(x2, None, y2, agent.forward(x2, None))
    got = out["loss"] + 0.7 * out["logit_loss"] + 0.3 * out["replay_loss"]
    assert got == pytest.approx(float(expect), rel=1e-5)
    lr = agent.settings["lr"]
    for p, q in zip(agent.model.parameters(), model.parameters(), strict=True):
        assert torch.allclose(p, q - lr * q.grad, atol=1e-6)


# ----------------------------------------------------------------------------- ER-ACE
def test_ace_masks_the_classes_absent_from_the_incoming_batch():
    logits = torch.randn(4, 10, requires_grad=True)
    y = torch.tensor([2, 5, 5, 2])
    loss = ace_incoming_loss(logits, y)
    sub = logits[:, [2, 5]]
    assert float(loss) == pytest.approx(float(F.cross_entropy(sub, torch.tensor([0, 1, 1, 0]))), rel=1e-6)
    loss.backward()
    absent = [c for c in range(10) if c not in (2, 5)]
    assert torch.all(logits.grad[:, absent] == 0) and torch.any(logits.grad[:, [2, 5]] != 0)


# ----------------------------------------------------------------------------- MIR
def test_mir_retrieves_the_candidates_the_virtual_step_hurts_most(info):
    agent = _agent("mir", info, settings={"replay_batch": 3, "candidates": 8})
    x, y = torch.rand(10, 1, 28, 28), torch.full((10,), 4)
    cand_x, cand_y = torch.rand(8, 1, 28, 28), torch.tensor([0, 1, 4, 4, 7, 8, 9, 0])
    from memory.base import ReplayBatch

    cand = ReplayBatch(cand_x, torch.zeros(8, dtype=torch.long), cand_y)
    loss = F.cross_entropy(agent.model(x), y)
    top, scores = agent.retrieve(loss, cand)
    # by hand: a copy of the model stepped once on the incoming batch
    virtual = copy.deepcopy(agent.model)
    F.cross_entropy(virtual(x), y).backward()
    with torch.no_grad():
        for p in virtual.parameters():
            p -= agent.settings["lr"] * p.grad
        hand = (F.cross_entropy(virtual(cand_x), cand_y, reduction="none")
                - F.cross_entropy(agent.model(cand_x), cand_y, reduction="none"))
    assert torch.allclose(scores, hand, atol=1e-5)
    assert set(top.tolist()) == set(hand.topk(3).indices.tolist())
    assert torch.equal(interference_scores(torch.tensor([1.0, 2.0]), torch.tensor([1.5, 1.0])),
                       torch.tensor([0.5, -1.0]))
    # the step toward class 4 hurts the other classes' candidates, not class 4's
    assert not set(top.tolist()) & {2, 3}


# ----------------------------------------------------------------------------- GDumb
def test_balanced_slot_follows_gdumbs_greedy_rule():
    rng = np.random.default_rng(0)
    labels = np.full(4, -1)
    counts = np.zeros(3, dtype=np.int64)
    used = 0
    decisions = []
    for label in [0, 0, 0, 0, 1, 1, 2, 0, 2]:
        slot = balanced_slot(counts, label, 4, used, rng, lambda c: np.flatnonzero(labels == c))
        decisions.append(slot is not None)
        if slot is None:
            continue
        if slot == used:
            used += 1
        else:
            counts[labels[slot]] -= 1
        labels[slot] = label
        counts[label] += 1
    # 4 zeros fill it; each 1 evicts a 0 (0, then 1, < 4/2); the first 2 evicts from a largest
    # class (0 < 4/3; classes 0 and 1 tie at 2, the seeded draw takes a 1), so the next 0 is
    # refused (class 0 holds 2 >= 4/3) and the second 2 accepted (1 < 4/3), evicting a 0
    assert decisions == [True, True, True, True, True, True, True, False, True]
    assert counts.sum() == 4 and counts[2] == 2 and min(counts) >= 1


def test_class_balanced_buffer_keeps_every_class_seen_balanced():
    mem = ClassBalancedBuffer(SPEC, capacity=30, seed=0)
    g = torch.Generator().manual_seed(0)
    for t, classes in enumerate([(0, 1), (2, 3), (4, 5)]):
        for _ in range(20):
            y = torch.tensor(classes)[torch.randint(0, 2, (10,), generator=g)]
            x = (y.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()
            mem.observe(x, t, y)
    held = mem.all()
    counts = torch.bincount(held.y, minlength=10)[:6]
    assert int(counts.sum()) == 30 and int(counts.max()) - int(counts.min()) <= 1
    # pixels stay with their labels through the evictions
    assert torch.allclose(held.x[:, 0, 0, 0], held.y.float() / 10, atol=1 / 255)
    assert mem.storage_bits == 30 * (6272 + 4 + 3) and mem.items == 30


def test_gdumb_learns_nothing_from_the_stream_and_retrains_from_scratch_at_task_end(info):
    agent = _agent("gdumb", info, budget=40, settings={"epochs": 3})
    start = copy.deepcopy(agent.model.state_dict())
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 2
    agent.learn(x, 0, y, agent.forward(x, 0))
    assert all(torch.equal(v, start[k]) for k, v in agent.model.state_dict().items())
    agent.end_task(0)
    first = copy.deepcopy(agent.model.state_dict())
    assert not all(torch.equal(v, start[k]) for k, v in first.items())
    again = _agent("gdumb", info, budget=40, settings={"epochs": 3})
    again.learn(x, 0, y, again.forward(x, 0))
    again.end_task(0)  # the same run repeats the same retraining
    assert all(torch.equal(v, first[k]) for k, v in again.model.state_dict().items())


# ----------------------------------------------------------------------------- SI
def test_si_path_integral_and_importance_by_hand():
    running = {"w": torch.zeros(3)}
    path_integral_step(running, {"w": torch.tensor([1.0, -2.0, 0.5])}, {"w": torch.tensor([-0.1, 0.2, 0.3])})
    assert torch.allclose(running["w"], torch.tensor([0.1, 0.4, -0.15]))
    omega = si_importance(running, {"w": torch.zeros(3)}, {"w": torch.tensor([1.0, 0.0, 1.0])}, xi=0.1)
    assert torch.allclose(omega["w"], torch.tensor([0.1 / 1.1, 0.4 / 0.1, 0.0]))  # negative -> 0


def test_si_accumulates_lr_times_squared_task_gradients_under_plain_sgd(info):
    """With plain SGD, delta = -lr g, so the path integral of task 0 is lr * sum of g^2."""
    agent = _agent("si", info)
    shadow = copy.deepcopy(agent.model)
    expect = {n: torch.zeros_like(p) for n, p in shadow.named_parameters()}
    g = torch.Generator().manual_seed(3)
    lr = agent.settings["lr"]
    for _ in range(4):
        x, y = torch.rand(10, 1, 28, 28, generator=g), torch.randint(0, 2, (10,), generator=g)
        shadow.zero_grad()
        F.cross_entropy(shadow(x), y).backward()
        with torch.no_grad():
            for n, p in shadow.named_parameters():
                expect[n] += lr * p.grad.pow(2)
                p -= lr * p.grad
        agent.learn(x, 0, y, agent.forward(x, 0))
    for n in expect:
        assert torch.allclose(agent.running[n], expect[n], rtol=1e-4, atol=1e-8), n
    agent.end_task(0)
    assert agent.has_penalty and all(torch.all(v >= 0) for v in agent.omega.values())
    assert all(torch.equal(agent.anchor[n], p.detach()) for n, p in agent.model.named_parameters())


def test_si_penalty_gradient_is_added_to_the_task_gradient(info):
    agent = _agent("si", info, settings={"lam": 0.5})
    with torch.no_grad():
        for n, p in agent.model.named_parameters():
            agent.omega[n] = torch.rand_like(p)
            agent.anchor[n] = p + 0.01 * torch.randn_like(p)
    agent.has_penalty = True
    ref = copy.deepcopy(agent.model)
    x, y = torch.rand(10, 1, 28, 28), torch.arange(10) % 2
    total = F.cross_entropy(ref(x), y) + 0.5 * sum(
        (agent.omega[n] * (p - agent.anchor[n]).pow(2)).sum() for n, p in ref.named_parameters())
    total.backward()
    agent.learn(x, 0, y, agent.forward(x, 0))
    for p, q in zip(agent.model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q - agent.settings["lr"] * q.grad, atol=1e-6)


# ----------------------------------------------------------------------------- MAS
def test_mas_importance_is_the_mean_absolute_per_example_gradient():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2, bias=False)
    x = torch.tensor([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.5]])
    W = lin.weight.detach()
    # d ||W x||^2 / dW = 2 (W x) x^T, per example; MAS averages the absolute values
    hand = sum((2 * (W @ xi).unsqueeze(1) * xi.unsqueeze(0)).abs() for xi in x) / 2
    got = mas_importance(lin, x)["weight"]
    assert torch.allclose(got, hand, atol=1e-6)
    batch_grad = torch.autograd.grad(lin(x).pow(2).sum(1).mean(), lin.weight)[0].abs()
    assert not torch.allclose(got, batch_grad)  # not the absolute gradient of the batch mean
    masked = mas_importance(lin, x, mask=torch.tensor([True, False]))["weight"]
    assert torch.all(masked[1] == 0) and torch.allclose(masked[0], hand[0], atol=1e-6)


def test_mas_reads_the_last_importance_samples_and_sums_tasks(info):
    agent = _agent("mas", info, settings={"importance_samples": 15})
    xs = [torch.rand(10, 1, 28, 28) for _ in range(3)]
    for x in xs:
        agent.learn(x, 0, torch.arange(10) % 2, agent.forward(x, 0))
    expect = mas_importance(agent.model, torch.cat(xs)[-15:])
    agent.end_task(0)
    for n in expect:
        assert torch.allclose(agent.omega[n], expect[n], atol=1e-7)
    x = torch.rand(10, 1, 28, 28)
    agent.learn(x, 1, torch.arange(10) % 2 + 2, agent.forward(x, 1))
    second = mas_importance(agent.model, x)
    before = {n: v.clone() for n, v in agent.omega.items()}
    agent.end_task(1)
    for n in expect:
        assert torch.allclose(agent.omega[n], before[n] + second[n], atol=1e-6)


# ----------------------------------------------------------------------------- runs
@pytest.mark.parametrize("agent", ["der", "derpp", "er_ace", "mir", "gdumb", "si", "mas", "icarl"])
def test_each_baseline_resumes_to_the_uninterrupted_result(agent, tiny, tmp_path):
    budget = 20 if agent not in ("si", "mas") else None
    settings = {"epochs": 4} if agent == "gdumb" else None
    whole = run(agent=agent, budget=budget, settings=settings, out=tmp_path / "whole", **tiny)
    with pytest.raises(KeyboardInterrupt):
        run(agent=agent, budget=budget, settings=settings, out=tmp_path / "cut", stop_after_task=0, **tiny)
    resumed = run(agent=agent, budget=budget, settings=settings, out=tmp_path / "cut", resume=True, **tiny)
    assert resumed.accuracy_matrix == whole.accuracy_matrix and resumed.storage_bits == whole.storage_bits


# ----------------------------------------------------------------------------- iCaRL
def test_herding_picks_the_points_whose_running_mean_tracks_the_class_mean():
    from memory.buffers import herding_order

    # normalised 2-d features: the mean direction is (1, 0); herding takes the point nearest the
    # mean first, then the one that brings the running mean back toward it
    f = torch.tensor([[1.0, 1.0], [1.0, 0.1], [1.0, -1.0], [0.0, 1.0], [1.0, -0.2]])
    phi = F.normalize(f, dim=1)
    mu = phi.mean(0)
    order = herding_order(f, 5).tolist()
    chosen, total = [], torch.zeros(2)
    for k in range(1, 6):  # Algorithm 4 by hand
        best = min((i for i in range(5) if i not in chosen), key=lambda i: float((mu - (total + phi[i]) / k).norm()))
        chosen.append(best)
        total += phi[best]
    assert order == chosen and sorted(order) == [0, 1, 2, 3, 4]
    assert herding_order(f, 2).tolist() == chosen[:2]


def test_herding_memory_shrinks_old_sets_to_their_first_exemplars_and_stays_within_capacity():
    from memory.buffers import HerdingExemplars

    mem = HerdingExemplars(SPEC, capacity=12, seed=0)
    feats = lambda x: x.flatten(1)[:, :4]  # noqa: E731 - a stand-in feature map
    mem.begin_task([0, 1])
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        y = torch.randint(0, 2, (10,), generator=g)
        mem.observe(torch.rand(10, 1, 28, 28, generator=g), 0, y)
        assert mem.items <= 12
    mem.select(feats)
    assert mem.n_exemplars == 12 and sorted(torch.bincount(mem.y[:12]).tolist()) == [6, 6]
    first = {c: mem.x[:12][(mem.y[:12] == c) & (mem.rank[:12] < 3)].clone() for c in (0, 1)}
    mem.begin_task([2, 3], 1)  # 4 classes: 3 each; the old sets keep their first 3 in herding order
    assert mem.n_exemplars == 6
    for c in (0, 1):
        assert torch.equal(mem.x[:6][mem.y[:6] == c], first[c])
    for _ in range(5):
        mem.observe(torch.rand(10, 1, 28, 28, generator=g), 1, torch.randint(2, 4, (10,), generator=g))
        assert mem.items <= 12 and mem.n_candidates <= 6
    mem.select(feats)
    assert torch.bincount(mem.y[:mem.n_exemplars], minlength=4).tolist() == [3, 3, 3, 3]
    assert mem.sample(40, generator=g).y.unique().numel() == 4
    assert mem.storage_bits == 12 * (6272 + 4 + 3)


def test_icarl_targets_and_nearest_mean():
    from agents.icarl import icarl_targets, nearest_mean

    y = torch.tensor([2, 3, 0])
    old = torch.tensor([[0.9, 0.2, 0.5, 0.5], [0.1, 0.8, 0.5, 0.5], [0.7, 0.3, 0.5, 0.5]])
    tgt = icarl_targets(y, old, torch.tensor([2, 3]), torch.tensor([0, 1]), 4)
    assert torch.equal(tgt, torch.tensor([[0.9, 0.2, 1.0, 0.0], [0.1, 0.8, 0.0, 1.0], [0.7, 0.3, 0.0, 0.0]]))
    means = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    scores = nearest_mean(torch.tensor([[2.0, 0.5], [0.1, 3.0]]), means)
    assert scores.argmax(1).tolist() == [0, 1]
    assert scores[0, 0] == pytest.approx(-float((F.normalize(torch.tensor([2.0, 0.5]), dim=0) - means[0]).norm()))


def test_icarl_classifies_by_the_nearest_exemplar_mean(info):
    agent = _agent("icarl", info, budget=40)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        x, y = torch.rand(10, 1, 28, 28, generator=g), torch.randint(0, 2, (10,), generator=g)
        agent.learn(x, 0, y, agent.forward(x, 0))
    agent.end_task(0)
    ex = agent.memory.exemplars()
    x = torch.rand(6, 1, 28, 28, generator=g)
    phi = F.normalize(agent.features(x), dim=1)
    mus = [F.normalize(F.normalize(agent.features(ex.x[ex.y == c]), dim=1).mean(0), dim=0) for c in (0, 1)]
    hand = torch.stack([(phi - mu).norm(dim=1) for mu in mus], 1).argmin(1)
    assert torch.equal(agent.predict(x).argmax(1), hand)
    assert agent.overhead_bits > 0 and agent.old_model is not None
