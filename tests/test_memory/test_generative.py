"""The lifelong generative teacher: its terms on hand-checked inputs, the mixing ratio, the hand-over."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import memory.generative as G
import memory.generative.teacher as teacher_module
from memory.base import MemorySpec
from memory.nets.lifelong_vae import LifelongVAE, grow

SPEC = MemorySpec((1, 28, 28), 10, 3)


def test_bernoulli_nll_by_hand():
    x = torch.tensor([[0.0, 1.0, 1.0]])
    logits = torch.tensor([[0.0, 0.0, 2.0]])
    expect = math.log(2) + math.log(2) + math.log(1 + math.exp(-2))
    assert G.bernoulli_nll(logits, x).item() == pytest.approx(expect, rel=1e-6)


def test_gaussian_kl_by_hand():
    assert G.gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0
    # mu = 1, sigma^2 = e: 0.5 (1 + e - 1 - 1) per dimension
    val = G.gaussian_kl(torch.ones(1, 2), torch.ones(1, 2)).item()
    assert val == pytest.approx(2 * 0.5 * (1 + math.e - 1 - 1), rel=1e-6)


def test_categorical_kl_uniform_by_hand():
    assert G.categorical_kl_uniform(torch.zeros(2, 5)).abs().max().item() < 1e-6
    near_one_hot = torch.tensor([[50.0, 0.0, 0.0, 0.0]])
    assert G.categorical_kl_uniform(near_one_hot).item() == pytest.approx(math.log(4), abs=1e-5)


def test_consistency_kl_equal_sizes_is_the_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    ref = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=s),
                                            torch.distributions.Categorical(logits=t))
    assert torch.allclose(G.consistency_kl(s, t), ref, atol=1e-6)
    assert G.consistency_kl(s, s).abs().max() < 1e-6


def test_consistency_kl_zero_pads_the_smaller_categorical():
    s = torch.tensor([[1.0, 0.0, -1.0]])   # the grown student: 3 categories
    t = torch.tensor([[0.5, -0.5]])        # the teacher: 2
    qs, lt = s.softmax(1)[0], t.log_softmax(1)[0]
    # the teacher gives the new category probability 0, floored at 1e-6
    expect = sum(qs[j] * (math.log(qs[j]) - lt[j]) for j in range(2)) + qs[2] * (math.log(qs[2]) - math.log(1e-6))
    assert G.consistency_kl(s, t).item() == pytest.approx(float(expect), rel=1e-5)
    # mass on the new category is penalised, not rewarded
    assert G.consistency_kl(torch.tensor([[0.5, -0.5, -30.0]]), t).item() < 1e-6


def test_info_gain_by_hand():
    d = 4
    z = torch.randn(3, d)
    # z exactly at the re-encoded mean with unit variance: log q = -d/2 log 2pi, plus H = d/2 (1 + log 2pi)
    val = G.info_gain(z, z.clone(), torch.zeros(3, d))
    assert torch.allclose(val, torch.full((3,), 0.5 * d))
    # one standard deviation away in every dimension costs d/2
    assert torch.allclose(G.info_gain(z, z + 1, torch.zeros(3, d)), torch.zeros(3), atol=1e-6)


@pytest.mark.parametrize("k", range(6))
def test_teacher_count_gives_the_papers_mixing_ratio(k):
    b = 10
    n = G.teacher_count(b, k)
    assert n / (n + b) == pytest.approx(k / (k + 1))


def test_anneal_tau():
    assert G.anneal_tau(0, 1.0, 0.5, 1e-3) == 1.0
    assert G.anneal_tau(10**6, 1.0, 0.5, 1e-3) == 0.5


def test_each_training_batch_mixes_k_teacher_batches(monkeypatch):
    mem = G.GenerativeTeacher(SPEC, mode="lifelong", seed=0)
    sizes = []
    real = G.vae_terms

    def spy(model, x, tau, generator=None):
        sizes.append(len(x))
        return real(model, x, tau, generator)

    monkeypatch.setattr(teacher_module, "vae_terms", spy)  # where GenerativeTeacher looks it up
    x = torch.rand(10, 1, 28, 28)
    for k in range(3):
        mem.observe(x, k, torch.zeros(10, dtype=torch.long))
        mem.end_task(k)
    assert sizes == [10, 20, 30]   # 10 real + k * 10 teacher samples: fraction k / (k + 1)
    assert mem.k == 3 and mem.student.z_d == 4


def test_hand_over_copies_weights_grows_zd_and_resets_bn_and_optimiser():
    mem = G.GenerativeTeacher(SPEC, mode="lifelong", batch_norm=True, seed=0)
    x = torch.rand(10, 1, 28, 28)
    for _ in range(3):
        mem.observe(x, 0, torch.zeros(10, dtype=torch.long))
    old = mem.student
    assert mem.optimizer.state  # Adam moments exist
    bn = [m for m in old.modules() if isinstance(m, torch.nn.BatchNorm1d)][0]
    assert bn.running_mean.abs().sum() > 0
    mem.end_task(0)
    new, teacher = mem.student, mem.teacher
    assert teacher.z_d == 1 and new.z_d == 2
    assert not any(p.requires_grad for p in teacher.parameters())
    resized = set()
    for (name, p), q in zip(new.named_parameters(), teacher.parameters(), strict=True):
        if p.shape != q.shape:
            resized.add(name)                  # re-initialised
        else:
            assert torch.equal(p, q), name     # every parameter whose shape matches is copied
    assert resized == {"to_latent.weight", "to_latent.bias", "from_latent.weight"}
    new_bn = [m for m in new.modules() if isinstance(m, torch.nn.BatchNorm1d)][0]
    assert new_bn.running_mean.abs().sum() == 0 and new_bn.num_batches_tracked == 0
    assert not mem.optimizer.state          # fresh optimiser


def test_grow_is_seeded_and_keeps_the_config():
    m = LifelongVAE((1, 28, 28), z_d=2)
    torch.manual_seed(3)
    a = grow(m)
    torch.manual_seed(3)
    b = grow(m)
    assert a.config == dict(m.config, z_d=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_fixing_zd_generates_that_category():
    m = LifelongVAE((1, 28, 28), z_d=3)
    z = m.sample_prior(5, torch.Generator().manual_seed(0), category=2)
    assert torch.equal(z[:, m.z_c:], F.one_hot(torch.full((5,), 2), 3).float())
    with pytest.raises(ValueError, match="category"):
        m.sample_prior(1, category=3)


def test_conv_model_shapes():
    for shape in ((1, 28, 28), (3, 32, 32)):
        m = LifelongVAE(shape, z_d=2, arch="conv")
        mu, lv, ld = m.encode(torch.rand(2, *shape))
        assert mu.shape == (2, 14) and ld.shape == (2, 2)
        assert m.decode(torch.randn(2, 16)).shape == (2, *shape)
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        LifelongVAE((1, 20, 20), arch="conv")


def test_ewc_mode_keeps_zd_and_penalises_moving_from_the_teacher():
    mem = G.GenerativeTeacher(SPEC, mode="ewc", gamma=10.0, fisher_samples=20, seed=0)
    x = torch.rand(10, 1, 28, 28)
    for _ in range(3):
        mem.observe(x, 0, torch.zeros(10, dtype=torch.long))
    mem.end_task(0)
    assert mem.student.z_d == 3 and mem.fisher is not None
    assert all((f >= 0).all() for f in mem.fisher.values())
    assert mem.recent == []
    out = mem.fit(x)
    assert out["ewc"].item() >= 0
    assert mem.overhead_bits == 32 * (4 * sum(p.numel() for p in mem.student.parameters()))


def test_gen_replay_samples_carry_soft_targets():
    class Ctx:
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

    mem = G.GenerativeTeacher(SPEC, mode="lifelong", seed=0)
    assert mem.sample(4, ctx=Ctx()) is None
    mem.observe(torch.rand(10, 1, 28, 28), 0, torch.zeros(10, dtype=torch.long))
    mem.end_task(0, ctx=Ctx())
    batch = mem.sample(4, ctx=Ctx())
    assert batch.x.shape == (4, 1, 28, 28) and batch.y.shape == (4, 10)
    assert torch.allclose(batch.y.sum(1), torch.ones(4))


def test_state_dict_round_trip_continues_identically():
    x = torch.rand(10, 1, 28, 28)
    y = torch.zeros(10, dtype=torch.long)
    a = G.GenerativeTeacher(SPEC, seed=1)
    a.observe(x, 0, y)
    a.end_task(0)
    state = a.state_dict()
    b = G.GenerativeTeacher(SPEC, seed=5)
    b.load_state_dict(state)
    la, lb = a.fit(x), b.fit(x)
    assert la["neg_elbo"] == lb["neg_elbo"]


def test_negative_elbo_is_deterministic():
    m = LifelongVAE((1, 28, 28), z_d=2)
    x = torch.rand(20, 1, 28, 28)
    assert G.negative_elbo(m, x) == G.negative_elbo(m, x) > 0


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        G.GenerativeTeacher(SPEC, mode="lifelog")


def test_frechet_distance_matches_scipy_and_is_zero_on_itself():
    from scipy import linalg

    from cl_env.metrics import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6)) + 2
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * np.real(linalg.sqrtm(ca @ cb)))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-8
    assert frechet_distance(a, a + 1.0) == pytest.approx(6.0)  # mean shift only: ||d||^2
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(a, np.full_like(a, np.nan))


def _grads_of_one_step(consistency: float, lam: float, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The student's gradients of one lifelong step after a hand-over (no update: the step's
    optimiser is replaced by a no-op), with the same random draws whatever the weights."""
    mem = G.GenerativeTeacher(SPEC, mode="lifelong", seed=0, consistency=consistency, lam=lam, clip=0.0)
    mem.observe(x, 0, torch.zeros(len(x), dtype=torch.long))
    mem.end_task(0)  # the student becomes the teacher
    mem.generator.manual_seed(123)
    mem.optimizer.step = lambda: None
    mem._step(x, None)
    assert all(p.grad is None for p in mem.teacher.parameters()), "the teacher must receive no gradient"
    return {n: p.grad.clone() for n, p in mem.student.named_parameters() if p.grad is not None}


def test_lifelong_terms_reach_what_they_should():
    """Eq. 6: the consistency KL moves the student's encoder (its z_d posterior on teacher samples)
    and never the decoder; the information-gain term reaches the decoder (through the
    reconstruction it re-encodes; the re-encoding's weights are a fixed estimator)."""
    torch.manual_seed(0)
    x = torch.rand(8, *SPEC.image_shape)
    base = _grads_of_one_step(0.0, 0.0, x)
    with_cons = _grads_of_one_step(1.0, 0.0, x)
    with_info = _grads_of_one_step(0.0, 0.5, x)
    encoder = [n for n in base if n.startswith(("encoder", "to_latent"))]
    decoder = [n for n in base if n.startswith(("from_latent", "decoder"))]
    assert encoder and decoder
    assert any(not torch.allclose(with_cons[n], base[n]) for n in encoder), "consistency does not reach the encoder"
    assert all(torch.allclose(with_cons[n], base[n]) for n in decoder), "consistency must not move the decoder"
    assert any(not torch.allclose(with_info[n], base[n]) for n in decoder), "info gain does not reach the decoder"
