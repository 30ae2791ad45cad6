"""ARM's recall terms on hand-checked inputs, the lag schedule, and the memory's accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from memory import MemorySpec
from memory.self_recall import (
    SelfRecall,
    bn_statistics_loss,
    diversity,
    l2_prior,
    neg_js_divergence,
    not_local,
    sharpen,
    soft_cross_entropy,
    total_variation,
)


def test_neg_js_divergence_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.9, 0.1]]))
    m = np.array([0.7, 0.3])
    kl = lambda p: float((m * np.log(m / p)).sum())  # noqa: E731
    expected = 1 - 0.5 * (kl(np.array([0.5, 0.5])) + kl(np.array([0.9, 0.1])))
    assert neg_js_divergence(old, new).item() == pytest.approx(expected, abs=1e-6)
    assert neg_js_divergence(old, old).item() == pytest.approx(1.0)


def test_neg_js_divergence_matches_kl_div_form_and_has_finite_gradient_when_probabilities_underflow():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    m = 0.5 * (a.softmax(1) + b.softmax(1))
    ref = 1 - 0.5 * (torch.nn.functional.kl_div(a.log_softmax(1), m, reduction="batchmean")
                     + torch.nn.functional.kl_div(b.log_softmax(1), m, reduction="batchmean"))
    assert neg_js_divergence(a, b).item() == pytest.approx(ref.item(), abs=1e-6)
    big = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    neg_js_divergence(big, big * 0.5).backward()
    assert torch.isfinite(big.grad).all()


def test_not_local_by_hand():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]))
    # -(1/C) sum_{c in present} CE(x, c), averaged over the batch: present = {0, 2}
    expected = np.mean([(math.log(0.2) + math.log(0.5)) / 2, (math.log(0.6) + math.log(0.2)) / 2])
    assert not_local(logits, torch.tensor([0, 2])).item() == pytest.approx(expected, abs=1e-6)


def test_diversity_is_minus_entropy_of_the_batch_mean():
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    assert diversity(logits).item() == pytest.approx(math.log(0.5), abs=1e-6)  # mean is uniform
    same = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]]))
    assert diversity(same).item() == pytest.approx(0.9 * math.log(0.9) + 0.1 * math.log(0.1), abs=1e-6)


def test_sharpen_soft_ce_tv_l2_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.3]]))
    assert sharpen(logits).item() == pytest.approx(-math.log(0.7), abs=1e-6)
    target = torch.log(torch.tensor([[0.25, 0.75]]))
    assert soft_cross_entropy(logits, target).item() == pytest.approx(
        -(0.25 * math.log(0.7) + 0.75 * math.log(0.3)), abs=1e-6)
    x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # one 1x2x2 image: columns differ by 1
    # vertical diffs 0; horizontal: 2 squared diffs of 1 over c*h*(w-1) = 2 -> 1; 2 * (0 + 1) / 1
    assert total_variation(x).item() == pytest.approx(2.0)
    assert l2_prior(x).item() == pytest.approx(math.sqrt(2) / 4)


def test_bn_statistics_loss_is_zero_on_matching_statistics():
    bn = nn.BatchNorm2d(1)
    x = torch.randn(64, 1, 4, 4)
    bn.running_mean.fill_(float(x.mean()))
    bn.running_var.fill_(float(x.var(unbiased=False)))
    model = nn.Sequential(bn).eval()
    assert bn_statistics_loss(model, x).item() == pytest.approx(0.0, abs=1e-5)
    assert bn_statistics_loss(model, x + 3).item() > 1.0
    assert bn_statistics_loss(nn.Sequential(nn.Flatten()), x).item() == 0.0


class _Ctx:
    def __init__(self):
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


class _Ctx4:
    def __init__(self):
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))


def _batch(c=0):
    return torch.rand(5, 1, 2, 2), torch.full((5,), c)


def test_lag_task_refreshes_at_each_new_task_and_recalls_from_the_second():
    spec = MemorySpec((1, 2, 2), 3, 3)
    mem, ctx = SelfRecall(spec, M=4, steps=2, step_size=1.0), _Ctx()
    olds = []
    for step in range(9):
        t = step // 3
        mem.observe(*_batch(t)[:1], t, _batch(t)[1], ctx)
        olds.append(mem.old)
        with torch.no_grad():
            ctx.model[1].weight.add_(0.1)  # the learner's step changes the model
        assert (mem.sample(ctx=ctx) is None) == (t == 0)
    assert olds[0] is olds[1] is olds[2] and olds[3] is not olds[2] and olds[6] is not olds[5]
    assert olds[3] is olds[4] is olds[5]


def test_int_lag_and_unit_lag():
    spec = MemorySpec((1, 2, 2), 3, 2)
    mem, ctx = SelfRecall(spec, lag=2), _Ctx()
    refreshes = []
    for _step in range(6):
        before = mem.old
        mem.observe(*_batch()[:1], 0, _batch()[1], ctx)
        refreshes.append(mem.old is not before)
    assert refreshes == [True, False, True, False, True, False]
    unit, ctx = SelfRecall(spec, lag=1), _Ctx()
    got = []
    for _step in range(3):
        before = unit.old
        unit.observe(*_batch()[:1], None, _batch()[1], ctx)
        got.append(unit.old is not before)
    assert got == [True, True, True] and unit.recall_on  # task-free: recall after the first lag
    with pytest.raises(ValueError, match="lag"):
        SelfRecall(spec, lag=0)
    with pytest.raises(ValueError, match="needs task ids"):
        SelfRecall(spec).observe(*_batch()[:1], None, _batch()[1], _Ctx())


def test_recall_moves_inputs_and_returns_old_model_targets():
    spec = MemorySpec((1, 2, 2), 3, 2)
    mem, ctx = SelfRecall(spec, M=6, steps=3, step_size=5.0), _Ctx()
    mem.observe(*_batch()[:1], 0, _batch()[1], ctx)
    with torch.no_grad():
        ctx.model[1].weight.mul_(-1)
    x, y = _batch(1)
    mem.observe(x, 1, y, ctx)
    rec = mem.sample(ctx=ctx)
    assert rec.x.shape == (6, 1, 2, 2) and rec.y.shape == (6, 3) and (rec.t == -1).all()
    assert not torch.allclose(rec.x, mem.last_init)  # S gradient steps moved them
    assert torch.allclose(rec.y, mem.old(rec.x))
    assert mem.storage_bits == 0 and mem.items == 0 and mem.overhead_bits == 32 * (4 * 3 + 3)


@pytest.mark.parametrize("objective", ["arm", "adi"])
def test_each_recall_term_reads_the_right_model_and_its_gradient_reaches_the_inputs(objective):
    """Every term of eq. 8-9 (and ADI's) is recomputed from the model it must read — the old copy or
    the current model — with a different current model so that pointing a term at the wrong one
    changes its value; and each term alone has a non-zero gradient with respect to the recalled
    inputs (a detached term would give none)."""
    torch.manual_seed(0)
    spec = MemorySpec((1, 2, 2), 3, 2)
    mem = SelfRecall(spec, M=4, objective=objective, lambda3=2.0, lambda4=0.5, lambda5=0.7, lambda6=0.3,
                     divergence_weight=1.5, lambda1=1.1, lambda2=0.4, classes_weight=1.3, adaptive_weight=0.9)
    old = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    new = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    mem.old = old
    x_hat = torch.rand(4, 1, 2, 2, requires_grad=True)
    present = torch.tensor([0])
    targets = torch.tensor([1, 2, 1, 2])
    total, terms = mem.recall_objective(x_hat, new, present, targets)
    lo, ln = old(x_hat), new(x_hat)
    s = mem.settings
    expected = {"sharpen": s["lambda4"] * sharpen(lo), "l2": s["lambda5"] * l2_prior(x_hat),
                "tv": s["lambda6"] * total_variation(x_hat)}
    if objective == "arm":
        expected.update(divergence=s["divergence_weight"] * neg_js_divergence(lo, ln),
                        not_local_old=s["lambda1"] * not_local(lo, present),
                        not_local_new=s["lambda2"] * not_local(ln, present),
                        diversity=s["lambda3"] * diversity(lo))
        wrong = {"not_local_old": s["lambda1"] * not_local(ln, present),
                 "not_local_new": s["lambda2"] * not_local(lo, present),
                 "diversity": s["lambda3"] * diversity(ln), "sharpen": s["lambda4"] * sharpen(ln)}
    else:
        expected.update(classes=s["classes_weight"] * torch.nn.functional.cross_entropy(lo, targets),
                        adaptive=s["adaptive_weight"] * neg_js_divergence(lo, ln),
                        batch_stats=s["bn_weight"] * bn_statistics_loss(old, x_hat))
        wrong = {"classes": s["classes_weight"] * torch.nn.functional.cross_entropy(ln, targets),
                 "sharpen": s["lambda4"] * sharpen(ln)}
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(terms[name], value), name
    for name, value in wrong.items():
        assert not torch.allclose(terms[name], value), f"{name} reads the wrong model"
    assert torch.allclose(total, sum(expected.values()))
    for name, value in terms.items():
        if name == "batch_stats":  # no batch norm in these models: the term is a constant 0
            assert float(value) == 0.0
            continue
        (grad,) = torch.autograd.grad(value, x_hat, retain_graph=True, allow_unused=True)
        assert grad is not None and float(grad.abs().sum()) > 0, f"{name} does not reach the inputs"


class _BNCtx:
    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
        self.model.train()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_recall_mode_train_recalls_with_batch_statistics_as_the_reference(mode):
    """ARM's reference deep-copies its train-mode model and recalls without switching modes:
    batch norm normalises by the recalled batch and the recall passes move the running stats."""
    spec = MemorySpec((1, 2, 2), 3, 2)
    mem, ctx = SelfRecall(spec, M=6, steps=2, step_size=1.0, recall_mode=mode), _BNCtx()
    mem.observe(*_batch()[:1], 0, _batch()[1], ctx)
    x, y = _batch(1)
    mem.observe(x, 1, y, ctx)
    assert mem.old.training == (mode == "train")
    bn = ctx.model[2]
    before = bn.running_mean.clone()
    rec = mem.sample(ctx=ctx)
    assert ctx.model.training  # the learner's mode is restored
    moved = not torch.allclose(bn.running_mean, before)
    assert moved == (mode == "train")
    # targets: the old model in the same mode, on the recalled batch
    old = mem.old
    with torch.no_grad():
        if mode == "eval":
            assert torch.allclose(rec.y, old(rec.x))
        else:
            stats = old[2].running_mean.clone()
            expected = old(rec.x)  # batch statistics: the output does not depend on running ones
            assert torch.allclose(rec.y, expected, atol=1e-5) and not torch.equal(stats, old[2].running_mean)
    restored = SelfRecall(spec, recall_mode=mode)
    restored.load_state_dict(mem.state_dict(), ctx=ctx)
    assert restored.old.training == (mode == "train")
    with pytest.raises(ValueError, match="recall_mode"):
        SelfRecall(spec, recall_mode="test")


def test_tv_and_bn_statistics_by_hand_on_asymmetric_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 3, 4, generator=g)  # batch 2, 2 channels, 3 x 4: both differences non-zero
    a = x.numpy().astype(np.float64)
    b, c, h, w = a.shape
    vert = sum((a[i, k, r + 1, q] - a[i, k, r, q]) ** 2 for i in range(b) for k in range(c)
               for r in range(h - 1) for q in range(w)) / (c * (h - 1) * w)
    horiz = sum((a[i, k, r, q + 1] - a[i, k, r, q]) ** 2 for i in range(b) for k in range(c)
                for r in range(h) for q in range(w - 1)) / (c * h * (w - 1))
    assert total_variation(x).item() == pytest.approx(2 * (vert + horiz) / b, rel=1e-5)
    # batch norm prior: |batch mean - running mean| + |batch var - running var|, both non-zero
    bn = nn.BatchNorm1d(2).eval()
    feats = torch.tensor([[1.0, 0.0], [3.0, 4.0]])  # mean (2, 2), biased var (1, 4)
    expected = math.hypot(2.0, 2.0) + math.hypot(0.0, 3.0)  # running mean 0, running var 1
    assert bn_statistics_loss(nn.Sequential(bn), feats).item() == pytest.approx(expected, rel=1e-6)


def test_the_memorys_defaults_are_arms_mnist_profile():
    """SelfRecall used without the agent recalls with Table 4's MNIST values, as the agent does."""
    from agents.arm import ARM, PROFILES
    from memory.self_recall import ARM_DEFAULTS

    for key, value in PROFILES["mnist"].items():
        if key in ARM_DEFAULTS:
            assert ARM_DEFAULTS[key] == value, key
    for key, value in ARM.SETTINGS.items():
        if key in ARM_DEFAULTS and value is not None:
            assert ARM_DEFAULTS[key] == value, key
    assert (ARM_DEFAULTS["lambda1"], ARM_DEFAULTS["lambda2"], ARM_DEFAULTS["lambda5"], ARM_DEFAULTS["lambda6"]) == \
        (1.0, 0.1, 1.0, 1.0)  # eq. 8-9 as the reference's MNIST command
    assert ARM_DEFAULTS["divergence_weight"] == 1.0  # --divergence_loss_weight 1.0 (task lag)
    from agents.arm import ADI, ADI_PROFILES

    for key in ("classes_weight", "adaptive_weight"):  # the ADI objective's weights, as the agent's
        assert ARM_DEFAULTS[key] == ADI.SETTINGS[key] == 1.0, key
    assert set(ADI_PROFILES) == {"mnist", "cifar10", "miniimagenet"}  # every profile sets ADI's bn_weight


def test_recall_schedule_init_targets_and_accounting_edges():
    spec = MemorySpec((1, 2, 2), 3, 2)
    ctx = _Ctx()
    mem = SelfRecall(spec, M=5, steps=3, step_size=2.0, lag=3)
    assert mem.overhead_bits == 0 and mem.sample(ctx=ctx) is None  # nothing seen, no old model
    xs = [torch.rand(5, 1, 2, 2) for _ in range(4)]
    for k in range(3):  # task-free: recall starts once `lag` batches were seen
        mem.observe(xs[k], None, torch.tensor([0, 1, 0, 1, 0]), ctx)
        assert not mem.recall_on and mem.sample(ctx=ctx) is None
    assert not any(p.requires_grad for p in mem.old.parameters())
    mem.observe(xs[3], None, torch.tensor([0, 1, 0, 1, 0]), ctx)
    assert mem.recall_on
    rec = mem.sample(ctx=ctx)
    # M equal to the batch: drawn without replacement, a permutation of the batch's images
    rows = {tuple(r.flatten().tolist()) for r in mem.last_init}
    assert rows == {tuple(r.flatten().tolist()) for r in xs[3]}
    assert torch.equal(mem.recalled_counts, torch.bincount(rec.y.argmax(1), minlength=3))
    # one small step descends the recall objective (x - eta grad, not x + eta grad)
    small = SelfRecall(spec, M=5, steps=1, step_size=1e-3, lag=3)
    small.load_state_dict(mem.state_dict(), ctx=ctx)
    small.configure(steps=1, step_size=1e-3)
    down = small.sample(ctx=ctx)
    with torch.no_grad():
        before, _ = small.recall_objective(small.last_init, ctx.model, torch.tensor([0, 1]))
        after, _ = small.recall_objective(down.x, ctx.model, torch.tensor([0, 1]))
    assert after < before
    # configure switches the old model's mode; a loaded old model is frozen too
    mem.configure(recall_mode="eval")
    assert not mem.old.training
    mem.configure(recall_mode="train")
    assert mem.old.training
    other = SelfRecall(spec)
    other.load_state_dict(mem.state_dict(), ctx=ctx)
    assert not any(p.requires_grad for p in other.old.parameters())
    # noise initialisation: uniform images, not the batch's
    noisy = SelfRecall(spec, M=4, steps=1, init="noise", lag=1)
    noisy.observe(xs[0], None, torch.tensor([0, 1, 0, 1, 0]), ctx)
    noisy.observe(xs[1], None, torch.tensor([0, 1, 0, 1, 0]), ctx)
    out = noisy.sample(ctx=ctx, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (4, 1, 2, 2) and noisy.last_init.shape == (4, 1, 2, 2)
    assert float(noisy.last_init.min()) >= 0 and float(noisy.last_init.max()) < 1
    assert not any(torch.equal(r, q) for r in noisy.last_init for q in xs[1])


def test_adi_targets_are_seen_classes_not_in_the_batch(monkeypatch):
    spec = MemorySpec((1, 2, 2), 4, 3)
    ctx = _Ctx4()
    picked = []
    real = SelfRecall.recall_objective

    def spy(self, x_hat, model, present, targets=None):
        picked.append(None if targets is None else targets.clone())
        return real(self, x_hat, model, present, targets)

    monkeypatch.setattr(SelfRecall, "recall_objective", spy)
    mem = SelfRecall(spec, M=200, steps=1, objective="adi", bn_weight=0.0)
    mem.observe(torch.rand(4, 1, 2, 2), 0, torch.tensor([0, 1, 0, 1]), ctx)
    mem.observe(torch.rand(4, 1, 2, 2), 1, torch.tensor([2, 2, 2, 2]), ctx)
    mem.sample(ctx=ctx)
    assert set(picked[-1].tolist()) == {0, 1}  # seen (0, 1, 2), not present (2)
    mem.observe(torch.rand(4, 1, 2, 2), 1, torch.tensor([0, 1, 2, 0]), ctx)  # every seen class present
    mem.sample(ctx=ctx)
    assert set(picked[-1].tolist()) == {0, 1, 2}  # then any seen class
    small = SelfRecall(spec, M=3, steps=1, objective="adi", bn_weight=0.0)
    small.observe(torch.rand(4, 1, 2, 2), 0, torch.tensor([0, 1, 3, 1]), ctx)
    small.observe(torch.rand(4, 1, 2, 2), 1, torch.tensor([2, 2, 2, 2]), ctx)
    for _ in range(20):  # M = 3 of 3 candidates: drawn without replacement, so each exactly once
        small.sample(ctx=ctx)
        assert sorted(picked[-1].tolist()) == [0, 1, 3]
    arm = SelfRecall(spec, M=4, steps=1)
    arm.observe(torch.rand(4, 1, 2, 2), 0, torch.tensor([0, 1, 0, 1]), ctx)
    arm.observe(torch.rand(4, 1, 2, 2), 1, torch.tensor([2, 2, 2, 2]), ctx)
    arm.sample(ctx=ctx)
    assert picked[-1] is None  # ARM's objective takes no target classes
