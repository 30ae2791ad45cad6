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
