"""The full-scale protocols on ``source="mnist"``, checked on fixture IDX files in the real format:
SplitMNIST is the DER paper's Seq-MNIST (every training image, the whole test split), the GEM
streams keep GEM's 20 tasks of 1,000 examples with the whole test split each; MNIST-5k is unchanged."""

from __future__ import annotations

import pytest
import torch

import cl_env
from cl_env.data.fixtures import write_mnist_like
from cl_env.registration import resolve_stream_kwargs


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    write_mnist_like(root, n_train=1200, n_test=200, seed=7)  # 120 / 20 images per digit
    return root


def test_seq_mnist_takes_every_training_image_in_five_tasks_of_two_digits(full_root):
    s = cl_env.make_stream("SplitMNIST-v0", source="mnist", root=full_root, verify=False)
    assert s.n_tasks == 5 and s.setting == "class"
    for t, task in enumerate(s.tasks):
        assert task.classes == (2 * t, 2 * t + 1)
        assert task.train_x.shape == (240, 1, 28, 28) and task.train_x.dtype == torch.uint8
        assert torch.bincount(task.train_y, minlength=10)[[2 * t, 2 * t + 1]].tolist() == [120, 120]
        assert torch.bincount(task.test_y, minlength=10)[[2 * t, 2 * t + 1]].tolist() == [20, 20]
    assert sum(t.n_train for t in s.tasks) == 1200 and sum(len(t.test_y) for t in s.tasks) == 200
    train = torch.cat([t.train_x for t in s.tasks]).reshape(1200, -1)
    assert len({bytes(r) for r in train.numpy()}) == 1200, "each training image exactly once"


def test_seq_mnist_identity_records_every_image_and_mnist5k_keeps_its_protocol(full_root):
    full = resolve_stream_kwargs("SplitMNIST-v0", {"source": "mnist"})
    assert full["train_per_class"] is None and full["source"] == "mnist"
    assert resolve_stream_kwargs("SplitMNIST-v0", {})["train_per_class"] == 500  # MNIST-5k: unchanged
    mir = cl_env.make_stream("SplitMNIST-v0", source="mnist", root=full_root, verify=False, train_per_class=50)
    assert [t.n_train for t in mir.tasks] == [100] * 5  # an explicit size still wins (MIR's 1,000 per task)
    small = cl_env.make_stream("SplitMNIST-v0")
    assert [t.n_train for t in small.tasks] == [800] * 5 and [len(t.test_y) for t in small.tasks] == [200] * 5


@pytest.mark.parametrize("env_id", ["MNISTRotations-v0", "MNISTPermutations-v0"])
def test_gem_streams_on_full_mnist_keep_gems_sizes(full_root, env_id):
    s = cl_env.make_stream(env_id, source="mnist", root=full_root, verify=False)
    assert s.n_tasks == 20 and s.setting == "domain"
    assert all(t.n_train == 1000 and len(t.test_y) == 200 for t in s.tasks)  # GEM: 1,000 / the whole test split
    assert all(torch.equal(t.test_y, s.tasks[0].test_y) for t in s.tasks)


def test_gym_env_over_seq_mnist_steps_every_image_once(full_root):
    import gymnasium as gym
    import numpy as np

    env = gym.make("SplitMNIST-v0", batch_size=10, source="mnist", root=str(full_root), verify=False)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, done, _, _ = env.step(np.zeros(10, dtype=np.int64))
        steps += 1
    assert steps == 120
