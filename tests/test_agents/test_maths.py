"""The pure maths of the learners: GEM's projection, the diagonal Fisher, distillation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from agents.ewc import diagonal_fisher
from agents.gem import project_gradient, solve_dual
from agents.lwf import distillation_loss


@st.composite
def problems(draw):
    k = draw(st.integers(1, 6))
    p = draw(st.integers(k, 20))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, generator=g, dtype=torch.float64), torch.randn(k, p, generator=g, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(problems(), st.sampled_from([0.0, 0.5]))
def test_projection_satisfies_every_constraint(prob, margin):
    g, G = prob
    g_new, info = project_gradient(g, G, margin=margin, eps=1e-8)
    assert info["eps"] is not None
    # KKT of the ridged dual: (GG^T + r I) v + Gg = mu >= 0, so G g~ = mu - r v >= -r v; the ridge's
    # slack matters when G is tiny (|G| = 0.0023 leaves G g~ = -3.5e-6 at r = 1e-8)
    v, ridge = solve_dual((G @ G.T).numpy(), (G @ g).numpy(), margin, 1e-8)
    slack = torch.as_tensor(ridge * v, dtype=G.dtype)
    assert (G @ g_new >= -slack - 1e-6 * (1 + G.norm(dim=1) * g.norm())).all()


@settings(max_examples=60, deadline=None)
@given(problems())
def test_projection_keeps_g_when_no_constraint_is_violated(prob):
    g, G = prob
    G = G * torch.sign(G @ g).unsqueeze(1)  # flip rows so that G g >= 0
    g_new, _ = project_gradient(g, G, margin=0.0, eps=1e-10)
    assert torch.allclose(g_new, g, atol=1e-6)


def test_projection_is_the_closest_feasible_gradient():
    g = torch.tensor([1.0, -1.0], dtype=torch.float64)
    G = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # constraint: second coordinate >= 0
    g_new, _ = project_gradient(g, G, margin=0.0, eps=0.0)
    assert torch.allclose(g_new, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-9)


def test_ill_conditioned_qp_never_crashes():
    g = torch.tensor([1.0, -1.0, 0.5])
    row = torch.tensor([0.0, 1.0, 1.0])
    G = torch.stack([row, row, row * (1 + 1e-9)])  # rank one: G G^T singular
    g_new, info = project_gradient(g, G, margin=0.5, eps=0.0)
    assert info["eps"] is not None and info["eps"] > 0  # the ridge was raised
    assert torch.isfinite(g_new).all() and (G @ g_new >= -1e-4).all()
    bad, info = project_gradient(g, G * float("nan"))
    assert info["eps"] is None and torch.equal(bad, g)


def test_solve_dual_gives_up_gracefully():
    P = np.array([[-1.0]])  # never positive definite within the tries
    v, ridge = solve_dual(P, np.array([1.0]), 0.0, eps=1e-9, max_tries=3)
    assert v is None and ridge is None


def test_diagonal_fisher_by_hand():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    y = torch.tensor([0, 1])
    # d CE / d W = (softmax(W x) - onehot(y)) x^T for each example, then mean of squares
    grads = []
    for xi, yi in zip(x.numpy(), y.numpy(), strict=True):
        z = model.weight.detach().numpy() @ xi
        p = np.exp(z - z.max())
        p /= p.sum()
        p[yi] -= 1.0
        grads.append(np.outer(p, xi))
    expected = np.mean(np.square(grads), axis=0)
    fisher = diagonal_fisher(model, x, y)
    assert np.allclose(fisher["weight"].numpy(), expected, atol=1e-6)
    summed = np.square(np.sum(grads, axis=0)) / 2  # GEM's bug: square of the summed gradient
    assert not np.allclose(fisher["weight"].numpy(), summed, atol=1e-3)


def test_distillation_is_zero_for_identical_logits_and_positive_otherwise():
    a = torch.tensor([[1.0, 2.0, float("-inf")], [0.1, -0.3, float("-inf")]])
    assert distillation_loss(a, a, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    b = a.clone()
    b[0, 0] = 3.0
    assert distillation_loss(b, a, 2.0).item() > 0


def test_plain_sgd_matches_torch_sgd():
    from agents.base import PlainSGD

    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = PlainSGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    for _ in range(3):
        x = torch.randn(5, 4)
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("T", [1.0, 2.0, 3.0])
def test_distillation_value_by_hand_including_the_t_squared_scale(T):
    """Hinton et al.'s T^2 * KL(p_old^T || p_new^T), two classes, by hand: at T = 2, T^2 = 2T, so
    T = 1 and 3 are what tell the square from a product."""
    new = torch.tensor([[1.0, 2.0]])
    old = torch.tensor([[2.0, 0.0]])

    def softmax2(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    p_old, p_new = softmax2([2.0, 0.0]), softmax2([1.0, 2.0])
    kl = sum(po * math.log(po / pn) for po, pn in zip(p_old, p_new, strict=True))
    assert distillation_loss(new, old, T).item() == pytest.approx(T * T * kl, rel=1e-6)


def _info():
    from agents.base import StreamInfo

    return StreamInfo((1, 4, 4), 3, 2, "domain", ((0, 1, 2), (0, 1, 2)), 40)


def test_lwf_keeps_no_old_model_before_its_first_task_end():
    from agents.lwf import LwF

    agent = LwF(_info(), settings={"model": "mlp"})
    assert agent.overhead_bits == 0 and agent.old is None
    agent.on_task_end(0)
    n = sum(p.numel() for p in agent.model.parameters())
    assert agent.overhead_bits == 32 * n and not any(p.requires_grad for p in agent.old.parameters())


def test_er_replays_soft_targets_as_a_soft_cross_entropy():
    """With a memory that replays soft targets (GEN replay from the teacher), ER's replay loss is
    -sum softmax-target * log softmax, averaged, then joined with the batch loss by size."""
    from agents.replay import ExperienceReplay
    from memory.base import ReplayBatch

    class Soft:
        def __init__(self, x, y):
            self.batch = ReplayBatch(x, torch.zeros(len(x), dtype=torch.long), y)

        def sample(self, n, ctx=None, generator=None):
            return self.batch

        def observe(self, *a, **k):
            pass

    info = _info()
    torch.manual_seed(0)
    rx = torch.rand(4, *info.image_shape)
    soft = torch.softmax(torch.randn(4, info.n_classes), 1)
    agent = ExperienceReplay(info, memory=Soft(rx, soft))
    x = torch.rand(6, *info.image_shape)
    y = torch.randint(0, info.n_classes, (6,))
    with torch.no_grad():
        expected = -(soft * agent.forward(rx, None).log_softmax(1)).sum(1).mean()
    out = agent.learn(x, 0, y, agent.forward(x, 0))
    assert out["replay_loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# ----------------------------------------------------------------------------- GEM: the QP's retries
def test_gem_solve_dual_is_exact_on_a_diagonal_dual_and_symmetrises_p():
    # min 1/2 v^T (P + r I) v + q^T v, v >= m, with P diagonal: v_i = max(m, -q_i / (P_ii + r))
    P, q = np.diag([2.0, 1.0]), np.array([-4.0, 1.0])
    v, ridge = solve_dual(P, q, 0.5, eps=0.0)
    assert ridge == 0.0 and np.allclose(v, [2.0, 0.5])
    v, ridge = solve_dual(P, q, 0.5, eps=1.0)
    assert ridge == 1.0 and np.allclose(v, [4.0 / 3.0, 0.5])
    v, _ = solve_dual(P, q, 0.0, eps=0.0)
    assert np.allclose(v, [2.0, 0.0])
    # only the symmetric part of P is a quadratic form: an antisymmetric part changes nothing
    v, _ = solve_dual(P + np.array([[0.0, 3.0], [-3.0, 0.0]]), q, 0.5, eps=0.0)
    assert np.allclose(v, [2.0, 0.5])


def test_gem_solve_dual_raises_the_ridge_tenfold_from_a_floor(monkeypatch):
    import agents.gem as gem

    real, ridges = gem.quadprog.solve_qp, []

    def failing(n):
        def solve(P, a, C, b):
            ridges.append(float(P[0, 0] - base[0, 0]))
            if len(ridges) <= n:
                raise ValueError("matrix G is not positive definite")
            return real(P, a, C, b)
        return solve

    base = np.diag([4.0, 2.0])  # trace / k = 3: the floor is 3e-6
    monkeypatch.setattr(gem.quadprog, "solve_qp", failing(3))
    v, ridge = solve_dual(base, np.array([-1.0, -1.0]), 0.0, eps=0.0)
    assert ridges == pytest.approx([0.0, 3e-6, 3e-5, 3e-4]) and ridge == pytest.approx(3e-4)
    assert np.allclose(v, [1.0 / (4.0 + 3e-4), 1.0 / (2.0 + 3e-4)])
    ridges.clear()
    base = np.diag([0.04, 0.02])  # a small mean diagonal (0.03) sets a small floor (3e-8)
    monkeypatch.setattr(gem.quadprog, "solve_qp", failing(1))
    solve_dual(base, np.array([-1.0, -1.0]), 0.0, eps=0.0)
    assert ridges == pytest.approx([0.0, 3e-8], abs=1e-12)
    ridges.clear()
    base = np.diag([4.0, 2.0])
    monkeypatch.setattr(gem.quadprog, "solve_qp", failing(2))
    _, ridge = solve_dual(base, np.array([-1.0, -1.0]), 0.0, eps=1e-2)  # above the floor: x10 each time
    assert ridges == pytest.approx([1e-2, 1e-1, 1.0]) and ridge == pytest.approx(1.0)
    ridges.clear()
    monkeypatch.setattr(gem.quadprog, "solve_qp", failing(99))
    v, ridge = solve_dual(base, np.array([-1.0, -1.0]), 0.0, eps=1e-2, max_tries=4)
    assert v is None and ridge is None and len(ridges) == 4  # exactly max_tries attempts


def test_gem_projection_reports_the_ridge_it_used_and_gives_up_to_g(monkeypatch):
    import agents.gem as gem

    g = torch.tensor([1.0, -1.0], dtype=torch.float64)
    G = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    out, info = project_gradient(g, G, margin=0.0, eps=0.25)
    assert info["eps"] == 0.25
    # (1 + 0.25) v - 1 = 0 at the optimum: v = 0.8, g~ = g + 0.8 g_1
    assert torch.allclose(out, torch.tensor([1.0, -0.2], dtype=torch.float64))

    def refuse(*a):
        raise ValueError("matrix G is not positive definite")

    tries = []
    monkeypatch.setattr(gem.quadprog, "solve_qp", lambda *a: tries.append(1) or refuse())
    out, projected, info = gem.gem_gradient(g, G, margin=0.5, eps=1e-3)
    assert projected and info["eps"] is None and out is g
    assert len(tries) == 8  # GEM's default: eight ridges, 1e-3 to 1e4


# ----------------------------------------------------------------------------- GEM / A-GEM agents
def _gem_agent(name: str, **settings):
    from agents import StreamInfo, agent_class
    from agents.registry import build_memory

    info = StreamInfo((1, 4, 4), 4, 3, "task", ((0, 1), (2, 3), (0, 3)), 60)
    mem = build_memory(name, None, None, info.memory_spec("cpu"), seed=0,
                       options={"per_task": 8} if name == "gem" else None)
    return agent_class(name)(info, memory=mem, settings={"model": "mlp", **settings}, seed=0)


def _batch(seed: int, n: int = 4):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_gem_agent_counts_projections_and_qp_failures_and_warns_once(monkeypatch):
    import agents.gem as gem

    agent = _gem_agent("gem")
    script = iter([(False, 1e-3), (True, 1e-3), (True, None), (True, None), (False, 1e-3)])

    def scripted(g, G, margin, eps):
        projected, ridge = next(script)
        return g, projected, {"eps": ridge}

    for step in range(2):  # task 0: no past task, no QP
        x, y = _batch(step)
        agent.learn(x, 0, y, agent.forward(x, 0))
    monkeypatch.setattr(gem, "gem_gradient", scripted)
    import warnings

    warned_at = []
    for step in range(5):
        x, y = _batch(10 + step)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            agent.learn(x, 1, y, agent.forward(x, 1))
        warned_at += [step for w in caught if "QP failed" in str(w.message)]
    assert warned_at == [2]  # at the first failure, and only then
    assert agent.counters()["projections"] == 3 and agent.counters()["qp_failures"] == 2
    state = agent.extra_state()
    fresh = _gem_agent("gem")
    fresh.load_extra_state(state)
    assert fresh.counters() == agent.counters()


def test_gem_agent_steps_along_the_projected_gradient(monkeypatch):
    import agents.gem as gem

    agent = _gem_agent("gem", lr=0.5)
    x, y = _batch(0)
    agent.learn(x, 0, y, agent.forward(x, 0))
    before = torch.cat([p.detach().reshape(-1) for p in agent.model.parameters()]).clone()
    direction = torch.linspace(-1.0, 1.0, before.numel())
    monkeypatch.setattr(gem, "gem_gradient", lambda g, G, m, e: (direction.clone(), True, {"eps": e}))
    x, y = _batch(1)
    agent.learn(x, 1, y, agent.forward(x, 1))
    after = torch.cat([p.detach().reshape(-1) for p in agent.model.parameters()])
    assert torch.allclose(after, before - 0.5 * direction, atol=1e-6)


def test_gem_past_gradients_vmap_equals_loop_and_the_cache_follows_the_memory():
    vm, lp = _gem_agent("gem", per_task_grads="vmap"), _gem_agent("gem", per_task_grads="loop")
    assert vm.use_vmap and not lp.use_vmap
    lp.model.load_state_dict(vm.model.state_dict())
    for agent in (vm, lp):
        for t, seeds in ((0, (0, 1, 2)), (1, (3,))):  # task 1 holds 4 items, task 0 the full 8 of 12
            for s in seeds:
                x, y = _batch(s)
                agent.memory.observe(x, t, y, ctx=agent)
    for tasks in ([0], [1], [0, 1]):
        assert torch.allclose(vm.past_gradients(tasks), lp.past_gradients(tasks), atol=1e-6), tasks
    g01 = vm.past_gradients([0, 1])
    assert not torch.allclose(g01[0], g01[1])  # one row per task, not one task twice
    for agent in (vm, lp):  # task 1's ring grows: a cached padded memory would be stale
        x, y = _batch(4)
        agent.memory.observe(x, 1, y, ctx=agent)
    assert torch.allclose(vm.past_gradients([0, 1]), lp.past_gradients([0, 1]), atol=1e-6)
    assert not torch.allclose(vm.past_gradients([0, 1])[1], g01[1])


def test_agem_agent_counts_its_projections(monkeypatch):
    import agents.gem as gem

    agent = _gem_agent("agem", ref_batch=4)
    calls = []
    real = gem.agem_project

    def counted(g, g_ref):
        out, projected = real(g, g_ref)
        calls.append(projected)
        return out, projected

    monkeypatch.setattr(gem, "agem_project", counted)
    for step in range(3):
        x, y = _batch(step)
        agent.learn(x, 0, y, agent.forward(x, 0))
    assert calls == []  # no past task: no reference gradient
    for step in range(12):
        x, y = _batch(20 + step)
        agent.learn(x, 1, y, agent.forward(x, 1))
    assert len(calls) == 12 and agent.counters()["projections"] == sum(calls)


# ----------------------------------------------------------------------------- EWC
def _ewc(**settings):
    from agents import StreamInfo, agent_class

    info = StreamInfo((1, 2, 2), 4, 3, "task", ((0, 1), (2, 3), (1, 2)), 60)
    return agent_class("ewc")(info, settings={"model": "mlp", **settings}, seed=0)


def test_ewc_linear_fisher_equals_the_per_example_gradients_and_falls_back_when_it_cannot():
    import agents.ewc as ewc

    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(9, 1, 2, 2, generator=g), torch.randint(0, 3, (9,), generator=g)
    for mask in (torch.ones(9, 1, dtype=torch.bool), torch.tensor([True, True, False]).expand(9, -1)):
        keep = mask.all(1) | (y < 2)
        fast = ewc.linear_fisher(model, x[keep], y[keep], mask[keep])
        slow = ewc._vmap_fisher(model, x[keep], y[keep], mask[keep], chunk=4)
        assert list(fast) == list(slow) == [n for n, _ in model.named_parameters()]
        assert all(torch.allclose(fast[n], slow[n], rtol=1e-5, atol=1e-8) for n in slow)
    twice = nn.Linear(4, 4)  # one layer applied twice: no closed form; the vmap path is taken
    reused = nn.Sequential(nn.Flatten(), twice, nn.ReLU(), twice)
    assert ewc.linear_fisher(reused, x, y % 3, torch.ones(9, 1, dtype=torch.bool)) is None
    both = diagonal_fisher(reused, x, y % 3)
    slow = ewc._vmap_fisher(reused, x, y % 3, torch.ones(9, 1, dtype=torch.bool), chunk=256)
    assert all(torch.equal(both[n], slow[n]) for n in slow)
    assert ewc._linear_layers(nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.Linear(2, 3))) is None

    class Head(nn.Module):  # a second head the loss does not use
        def __init__(self):
            super().__init__()
            self.body, self.aux = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Linear(4, 2)

        def forward(self, v):
            self.aux(v.flatten(1))
            return self.body(v)

    tied = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    tied[3].weight = tied[1].weight
    fallbacks = {  # where the identity does not hold or cannot be read off the forward: vmap's numbers
        "in-place ReLU": nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(inplace=True), nn.Linear(5, 3)),
        "3-D input": nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6, 3)),
        "tied weights": tied,
    }
    ones = torch.ones(9, 1, dtype=torch.bool)
    xs = x.reshape(9, 1, 2, 2)
    for what, net in fallbacks.items():
        assert ewc.linear_fisher(net, xs, y % 3, ones) is None, what
        got, want = diagonal_fisher(net, xs, y % 3), ewc._vmap_fisher(net, xs, y % 3, ones, chunk=256)
        assert all(torch.allclose(got[n], want[n], rtol=1e-5, atol=1e-8) for n in want), what
    head = Head()
    fast, slow = ewc.linear_fisher(head, xs, y % 3, ones), ewc._vmap_fisher(head, xs, y % 3, ones, chunk=256)
    assert list(fast) == list(slow) and torch.equal(fast["aux.weight"], torch.zeros(2, 4))
    assert all(torch.allclose(fast[n], slow[n], rtol=1e-5, atol=1e-8) for n in slow)
    with torch.inference_mode():
        assert ewc.linear_fisher(model, x, y, ones) is None
    assert ewc._linear_layers(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.BatchNorm1d(4))) is None


def test_ewc_fisher_chunks_and_masks_agree_with_one_pass():
    model = nn.Sequential(nn.Unflatten(1, (1, 2, 2)), nn.Conv2d(1, 1, 1), nn.Flatten(), nn.Linear(4, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 1, 2, 2, generator=g).flatten(1), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    whole = diagonal_fisher(model, x, y)
    for chunk in (1, 3, 7):
        parts = diagonal_fisher(model, x, y, chunk=chunk)
        assert all(torch.allclose(parts[n], whole[n], atol=1e-7) for n in whole), chunk
    # a mask of every logit is no mask; masking a class changes the softmax, hence the Fisher
    full = diagonal_fisher(model, x, y, torch.ones(7, 3, dtype=torch.bool))
    assert all(torch.allclose(full[n], whole[n], atol=1e-7) for n in whole)
    mask = torch.tensor([True, True, False]).expand(7, -1)
    keep = y < 2
    masked = diagonal_fisher(model, x[keep], y[keep], mask[keep])
    assert not torch.allclose(masked["3.weight"], diagonal_fisher(model, x[keep], y[keep])["3.weight"])
    assert torch.equal(masked["3.weight"][2], torch.zeros(4))  # a masked logit gets no gradient
    model.train()
    diagonal_fisher(model, x, y)
    assert model.training  # the mode is restored


def test_ewc_penalty_is_the_sum_of_per_task_quadratics_up_to_a_constant(monkeypatch):
    import agents.ewc as ewc

    agent = _ewc(lam=3.0)
    names = [n for n, _ in agent.model.named_parameters()]
    g = torch.Generator().manual_seed(1)
    fishers, anchors = [], []
    for t in range(2):
        F_t = {n: torch.rand(p.shape, generator=g) for n, p in agent.model.named_parameters()}
        with torch.no_grad():
            for p in agent.model.parameters():
                p.add_(torch.randn(p.shape, generator=g))
        anchors.append({n: p.detach().clone() for n, p in agent.model.named_parameters()})
        fishers.append(F_t)
        monkeypatch.setattr(ewc, "diagonal_fisher", lambda *a, F_t=F_t, **k: F_t)
        x = torch.rand(2, 1, 2, 2, generator=g)
        agent.learn(x, t, torch.tensor([0, 1]), agent.forward(x, t)) if t == 0 else None
        agent.recent.batches, agent.recent.n = [(x, torch.tensor([0, 1]))], 2
        with torch.no_grad():  # the learn step moved the weights: put the anchor back
            for n, p in agent.model.named_parameters():
                p.copy_(anchors[t][n])
        agent.on_task_end(t)
    with torch.no_grad():
        for p in agent.model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    theta = dict(agent.model.named_parameters())
    explicit = sum(1.5 * (fishers[k][n] * (theta[n] - anchors[k][n]) ** 2).sum() for k in range(2) for n in names)
    constant = sum(1.5 * (fishers[k][n] * anchors[k][n] ** 2).sum() for k in range(2) for n in names)
    agent.model.zero_grad(set_to_none=True)
    explicit, constant = explicit.detach(), constant.detach()
    pen = agent.penalty()
    # float32 sums of ~1e2 terms: agreement to 1e-4 relative (a constant of 1 in the sum is 1.5 off)
    assert float(pen.detach()) == pytest.approx(float(explicit - constant), rel=1e-4)
    pen.backward()
    for n in names:  # d/d theta = lam sum_k F_k (theta - theta*_k)
        expected = 3.0 * sum(fishers[k][n] * (theta[n] - anchors[k][n]) for k in range(2))
        assert torch.allclose(theta[n].grad, expected.detach(), atol=1e-5), n
    assert agent.overhead_bits == 2 * 32 * sum(p.numel() for p in agent.model.parameters())


def test_ewc_fisher_reads_exactly_the_last_fisher_samples_of_the_task_with_its_mask(monkeypatch):
    import agents.ewc as ewc

    seen = {}

    def capture(model, x, y, mask=None):
        seen.update(x=x.clone(), y=y.clone(), mask=mask)
        return {n: torch.ones_like(p) for n, p in model.named_parameters()}

    monkeypatch.setattr(ewc, "diagonal_fisher", capture)
    agent = _ewc(fisher_samples=10)
    agent.on_task_end(0)  # nothing seen yet: no penalty
    assert not agent.has_penalty
    xs, ys = [], []
    for step in range(6):  # 6 batches of 4: the last 10 examples span three batches
        x = torch.full((4, 1, 2, 2), float(step)) + torch.arange(4.0).view(4, 1, 1, 1) / 10
        y = torch.tensor([0, 1, 1, 0])
        out = agent.learn(x, 0, y, agent.forward(x, 0))
        assert "ewc_penalty" not in out
        xs.append(x), ys.append(y)
        assert agent.recent.n >= min(10, 4 * (step + 1))
        assert agent.recent.n - len(agent.recent.batches[0][1]) < 10  # no batch kept that is not needed
    agent.on_task_end(0)
    assert torch.equal(seen["x"], torch.cat(xs)[-10:]) and torch.equal(seen["y"], torch.cat(ys)[-10:])
    assert torch.equal(seen["mask"], agent.class_mask[0].expand(10, -1))
    assert agent.has_penalty and agent.recent.batches == [] and agent.recent.n == 0
    x = torch.rand(4, 1, 2, 2)
    out = agent.learn(x, 1, y, agent.forward(x, 1))
    assert "ewc_penalty" in out
    single = _ewc(fisher_samples=3, head="single")
    single.learn(x, 0, y, single.forward(x, None))
    single.on_task_end(0)
    assert seen["mask"] is None and len(seen["y"]) == 3
    # batches of 3: after 12 examples, dropping the first would leave 9 < 10, so all 12 stay
    edge = _ewc(fisher_samples=10)
    for step in range(4):
        xb = torch.full((3, 1, 2, 2), float(step))
        edge.learn(xb, 0, torch.tensor([0, 1, 0]), edge.forward(xb, 0))
    assert edge.recent.n == 12 and len(edge.recent.batches) == 4
    edge.on_task_end(0)
    assert seen["x"][:, 0, 0, 0].tolist() == [0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # the last 10 of the 12
    # batches of 5: after 15 examples the first batch is not needed (10 remain): it is dropped
    five = _ewc(fisher_samples=10)
    for step in range(3):
        xb = torch.full((5, 1, 2, 2), float(step))
        five.learn(xb, 0, torch.tensor([0, 1, 0, 1, 0]), five.forward(xb, 0))
    assert five.recent.n == 10 and len(five.recent.batches) == 2
    restored = _ewc()
    restored.load_extra_state(agent.extra_state())
    assert restored.has_penalty and all(torch.equal(restored.A[n], agent.A[n]) for n in agent.A)


# ----------------------------------------------------------------------------- LwF, ARM's Distill variant
def test_lwf_two_step_is_a_ce_step_then_a_distillation_step_at_the_updated_weights():
    """ARM's "Distill (LwF)" baseline (code/scripts/distill.py): SGD on CE, then SGD on
    alpha * KL(old || new) at T = 1, the new logits recomputed after the first step."""
    import copy

    from agents.lwf import LwF

    info = _info()
    agent = LwF(info, settings={"model": "mlp", "update": "two_step", "temperature": 1.0, "alpha": 0.7, "lr": 0.3})
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(6, *info.image_shape, generator=g), torch.randint(0, info.n_classes, (6,), generator=g)
    out = agent.learn(x, 0, y, agent.forward(x, 0))
    assert "distillation" not in out  # no old model in the first task: the CE step only
    agent.on_task_end(0)
    with torch.no_grad():
        for p in agent.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))  # the model moved on since the task end
    ref = copy.deepcopy(agent.model)
    ce = nn.functional.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(ce, list(ref.parameters()))
    with torch.no_grad():
        for p, gr in zip(ref.parameters(), grads, strict=True):
            p.sub_(0.3 * gr)
    old = agent.old(x)
    kl = nn.functional.kl_div(ref(x).log_softmax(1), old.softmax(1), reduction="batchmean")
    grads = torch.autograd.grad(0.7 * kl, list(ref.parameters()))
    with torch.no_grad():
        for p, gr in zip(ref.parameters(), grads, strict=True):
            p.sub_(0.3 * gr)
    out = agent.learn(x, 1, y, agent.forward(x, 1))
    assert float(out["distillation"]) == pytest.approx(float(kl.detach()), rel=1e-5)
    for p, q in zip(agent.model.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    # joint LwF from the same start is a different step (one update on CE + alpha * T^2 KL)
    joint = LwF(info, settings={"model": "mlp", "temperature": 1.0, "alpha": 0.7, "lr": 0.3})
    assert joint.settings["update"] == "joint"


def test_adi_defaults_are_the_reference_commands():
    from agents import StreamInfo, agent_class
    from memory.self_recall import SelfRecall

    for shape, profile, distill, bn in (((1, 28, 28), "mnist", 0.5, 0.0), ((3, 32, 32), "cifar10", 1.0, 0.1),
                                        ((3, 84, 84), "miniimagenet", 2.0, 0.1)):
        info = StreamInfo(shape, 10, 5, "class", tuple((2 * i, 2 * i + 1) for i in range(5)), 100)
        spec = info.memory_spec("cpu")
        adi = agent_class("adi")(info, memory=SelfRecall(spec), settings={"model": "mlp"})
        s = adi.settings
        assert (s["profile"], s["lambda4"], s["lambda0_real"], s["bn_weight"]) == (profile, 0.0, distill, bn)
        assert adi.memory.settings["lambda4"] == 0.0 and adi.memory.settings["bn_weight"] == bn
        arm = agent_class("arm")(info, memory=SelfRecall(spec), settings={"model": "mlp"})
        assert arm.settings["lambda4"] == (1.0 if profile == "miniimagenet" else 0.1)  # ARM sharpens


def test_agem_does_not_count_an_orthogonal_reference_as_a_projection():
    from agents.gem import agem_project

    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])  # g . g_ref = 0: no conflict
    out, projected = agem_project(g, g_ref)
    assert not projected and out is g


def test_gem_chooses_the_loop_for_batch_norm_models_and_refuses_vmap_there():
    from agents import StreamInfo, agent_class
    from agents.registry import build_memory

    info = StreamInfo((3, 8, 8), 4, 2, "task", ((0, 1), (2, 3)), 20)
    mem = lambda: build_memory("gem", None, None, info.memory_spec("cpu"), options={"per_task": 4})  # noqa: E731
    gem = agent_class("gem")
    assert not gem(info, memory=mem(), settings={"model": "reduced_resnet18"}).use_vmap  # auto: loop
    assert not gem(info, memory=mem(), settings={"model": "reduced_resnet18", "per_task_grads": "loop"}).use_vmap
    with pytest.raises(ValueError, match="batch norm"):
        gem(info, memory=mem(), settings={"model": "reduced_resnet18", "per_task_grads": "vmap"})
    assert gem(info, memory=mem(), settings={"model": "mlp"}).use_vmap  # auto without batch norm: vmap
    assert not gem(info, memory=mem(), settings={"model": "mlp", "per_task_grads": "loop"}).use_vmap


def test_agem_reference_batch_from_a_shared_memory_leaves_out_the_current_task(monkeypatch):
    """With a memory that mixes tasks (reservoir), A-GEM's reference gradient is computed on the
    drawn items of past tasks only."""
    from agents import StreamInfo, agent_class
    from agents.registry import build_memory

    info = StreamInfo((1, 4, 4), 4, 3, "task", ((0, 1), (2, 3), (0, 3)), 60)
    mem = build_memory("agem", "reservoir", 40, info.memory_spec("cpu"), seed=0)
    agent = agent_class("agem")(info, memory=mem, settings={"model": "mlp", "ref_batch": 64}, seed=0)
    for t in (0, 1):
        for step in range(3):
            x, y = _batch(10 * t + step)
            agent.learn(x, t, y, agent.forward(x, t))
    ref = agent._reference_batch([0], 1)
    assert len(ref.t) > 0 and bool((ref.t == 0).all())
    ref = agent._reference_batch([0, 1], 2)
    assert set(ref.t.tolist()) == {0, 1}


def test_ewc_quadratic_penalty_gradient_passes_gradcheck():
    from agents.ewc import quadratic_penalty

    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (4,)]
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    A = [torch.rand(s, generator=g, dtype=torch.float64) for s in shapes]
    B = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    assert torch.autograd.gradcheck(lambda *p: quadratic_penalty(p, A, B, 2.5), tuple(params))
    value = quadratic_penalty(params, A, B, 2.5)
    expected = 1.25 * sum((a * p * p - 2 * b * p).sum() for p, a, b in zip(params, A, B, strict=True))
    assert float(value.detach()) == pytest.approx(float(expected.detach()), rel=1e-12)
