"""Metrics against hand-computed matrices, and properties of the formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cl_env import metrics

R = np.array([
    [0.9, 0.1, 0.2],
    [0.7, 0.8, 0.3],
    [0.6, 0.5, 0.9],
])


def test_hand_computed_values():
    assert metrics.retained_accuracy(R) == pytest.approx((0.6 + 0.5 + 0.9) / 3)
    assert metrics.learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 0.9) / 3)
    assert metrics.bti(R) == pytest.approx((2.0 - 2.6) / 3)
    # BWT over j < T-1 with the paper's T-1 denominator: ((0.6-0.9) + (0.5-0.8)) / 2
    assert metrics.backward_transfer(R) == pytest.approx(-0.3)
    # FWT: (R[0,1] - b1 + R[1,2] - b2) / 2 with b = (0.1, 0.1, 0.1)
    assert metrics.forward_transfer(R, [0.1, 0.1, 0.1]) == pytest.approx((0.0 + 0.2) / 2)
    # forgetting: f0 = max(0.9, 0.7) - 0.6 = 0.3, f1 = max(0.1, 0.8) - 0.5 = 0.3
    assert metrics.forgetting(R) == pytest.approx(0.3)


def test_single_task_and_bad_shapes():
    assert metrics.backward_transfer([[0.5]]) == 0.0 and metrics.forgetting([[0.5]]) == 0.0
    with pytest.raises(ValueError, match="square"):
        metrics.retained_accuracy(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one accuracy per task"):
        metrics.forward_transfer(R, [0.1])


square = st.integers(1, 6).flatmap(
    lambda n: arrays(np.float64, (n, n), elements=st.floats(0, 1, allow_nan=False))
)


@given(square)
def test_properties(M):
    assert metrics.bti(M) == pytest.approx(metrics.retained_accuracy(M) - metrics.learning_accuracy(M))
    assert -1 <= metrics.backward_transfer(M) <= 1
    s = metrics.summary(M)
    assert s["forward_transfer"] is None and s["retained_accuracy"] == metrics.retained_accuracy(M)


@given(square)
def test_no_forgetting_when_accuracy_never_drops(M):
    mono = np.maximum.accumulate(M, axis=0)  # accuracies that only rise over time
    assert metrics.forgetting(mono) <= 1e-12
    assert metrics.backward_transfer(mono) >= -1e-12


# An asymmetric matrix: task 0 peaks in the last row, task 1 in row 1, task 2 in row 2 (not the
# last), and a non-uniform FWT baseline, so "max over the wrong rows" and "baseline off by one"
# give different numbers.
A = np.array([
    [0.50, 0.10, 0.05, 0.20],
    [0.70, 0.60, 0.30, 0.15],
    [0.90, 0.40, 0.80, 0.25],
    [0.95, 0.30, 0.60, 0.70],
])
B = [0.10, 0.20, 0.05, 0.12]


def test_asymmetric_hand_computed_values():
    assert metrics.retained_accuracy(A) == pytest.approx(2.55 / 4)
    assert metrics.learning_accuracy(A) == pytest.approx(2.60 / 4)
    assert metrics.bti(A) == pytest.approx(-0.05 / 4)
    # ((0.95 - 0.50) + (0.30 - 0.60) + (0.60 - 0.80)) / 3
    assert metrics.backward_transfer(A) == pytest.approx(-0.05 / 3)
    # ((0.10 - 0.20) + (0.30 - 0.05) + (0.25 - 0.12)) / 3
    assert metrics.forward_transfer(A, B) == pytest.approx(0.28 / 3)
    # f0 = max(.5, .7, .9) - .95 = -.05 (the last row is not a candidate), f1 = .6 - .3, f2 = .8 - .6
    assert metrics.forgetting(A) == pytest.approx(0.45 / 3)
    s = metrics.summary(A, B)
    assert s["forward_transfer"] == pytest.approx(0.28 / 3) and s["forgetting"] == pytest.approx(0.15)


def test_frechet_distance_closed_forms_and_bad_inputs():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    # identical sets: 0; a mean shift d: |d|^2; a scale s of isotropic noise: D (1 - s)^2 on top
    assert abs(metrics.frechet_distance(a, a)) < 1e-8
    assert metrics.frechet_distance(a, a + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-9)
    # b = 3a: C_b = 9 C_a, (C_a C_b)^(1/2) = 3 C_a, so Tr = (1 + 9 - 6) Tr C_a; means differ by 2 m_a
    assert metrics.frechet_distance(a, 3.0 * a) == pytest.approx(
        4.0 * np.trace(np.cov(a, rowvar=False)) + 4.0 * (a.mean(0) ** 2).sum(), rel=1e-9)
    for bad_a, bad_b, match in [
        (np.zeros(5), np.zeros((5, 1)), r"\(N, D\)"),                 # 1-D
        (np.zeros((5, 2)), np.zeros((5, 3)), r"\(N, D\)"),            # unequal D
        (np.zeros((1, 2)), np.zeros((5, 2)), r"N >= 2"),              # one row
        (np.zeros((5, 2)), np.zeros((1, 2)), r"N >= 2"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "NaN or inf"),
        (np.zeros((5, 2)), np.full((5, 2), np.inf), "NaN or inf"),
    ]:
        with pytest.raises(ValueError, match=match):
            metrics.frechet_distance(bad_a, bad_b)
    assert metrics.frechet_distance(np.zeros((2, 2)), np.ones((2, 2))) == pytest.approx(2.0)  # N = 2 is enough


def test_metric_shape_checks():
    for bad in (np.zeros((2, 3)), np.zeros((0, 0)), np.zeros(3), np.zeros((2, 2, 2))):
        for fn in (metrics.retained_accuracy, metrics.backward_transfer, metrics.forgetting):
            with pytest.raises(ValueError, match="square"):
                fn(bad)
    for T in (1, 2, 3):  # the single-task case is a valid matrix for every metric
        M = np.full((T, T), 0.5)
        assert metrics.retained_accuracy(M) == 0.5 and metrics.forward_transfer(M, [0.5] * T) == 0.0
