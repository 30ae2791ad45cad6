"""Learning checks on the real embedded MNIST (MNISTRotations-v0, 20 x 1,000): who beats whom.

Run with ``python -m pytest -m expensive`` (a minute or two on 2 cores).
"""

from __future__ import annotations

import pytest

from agents import run

pytestmark = pytest.mark.expensive


@pytest.fixture(scope="module")
def online():
    return run("MNISTRotations-v0", agent="online").retained_accuracy


def test_gem_retains_most(online):
    gem = run("MNISTRotations-v0", agent="gem")
    assert gem.retained_accuracy > 0.8 and gem.retained_accuracy > online + 0.3
    assert abs(gem.backward_transfer) < 0.1


@pytest.mark.parametrize(("agent", "budget", "margin"),
                         [("er", 200, 0.15), ("agem", None, 0.03), ("ewc", None, 0.05), ("lwf", None, 0.03)])
def test_baselines_beat_online(online, agent, budget, margin):
    r = run("MNISTRotations-v0", agent=agent, budget=budget)
    assert r.retained_accuracy > online + margin, (agent, r.retained_accuracy, online)


@pytest.mark.parametrize(("algo", "threshold"), [("ppo", 0.15), ("dqn", 0.3)])
def test_sb3_bandits_learn_split_mnist(algo, threshold):
    r = run("SplitMNIST-v0", agent="sb3", settings={"algo": algo})
    assert r.online_accuracy > threshold  # 10 classes: chance is 0.1


def test_arm_and_adi_beat_lwf_and_naive_on_split_mnist():
    base = {"model": "mlp400", "lr": 0.05}
    naive = run("SplitMNIST-v0", agent="online", settings=base).retained_accuracy
    lwf = run("SplitMNIST-v0", agent="lwf", settings=base).retained_accuracy
    arm = run("SplitMNIST-v0", agent="arm").retained_accuracy
    adi = run("SplitMNIST-v0", agent="adi").retained_accuracy
    assert min(arm, adi) > lwf > naive + 0.1, (arm, adi, lwf, naive)
