"""TaskStream, the MNIST-family builders and ContinualEnv options."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchvision.transforms.functional import InterpolationMode, rotate

import cl_env
from cl_env.data import load_source
from cl_env.streams.mnist import rotate_nearest


@pytest.fixture(scope="module")
def small(mnist_root):
    return cl_env.make_stream("MNISTRotations-v0", source="mnist", verify=False, root=mnist_root, n_tasks=3,
                              train_per_task=95)


@pytest.mark.parametrize("shape", [(50, 1, 28, 28), (4, 3, 32, 30)])
def test_rotation_is_bit_identical_to_torchvision_nearest(shape):
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    angles = [0.0, 4.5, 9.0, 33.3, 45.0, 90.0, 135.7, 179.9, *np.linspace(0, 360, 97).tolist()]
    for angle in angles:
        assert torch.equal(rotate_nearest(x, angle), rotate(x, angle, InterpolationMode.NEAREST)), angle


def test_rotation_angles_fall_in_their_bins():
    stream = cl_env.make_stream("MNISTRotations-v0")
    angles = stream.metadata["angles"]
    assert len(angles) == 20
    for t, a in enumerate(angles):
        assert 9 * t <= a < 9 * (t + 1)
    assert stream.n_train == 20_000 and stream.tasks[0].test_x.shape[0] == 1000


def test_permutations_identity_first_and_distinct_tasks():
    s = cl_env.make_stream("MNISTPermutations-v0", n_tasks=3, identity_first=True)
    plain = load_source("mnist5k", env_id="X-v0").test_x
    assert torch.equal(s.tasks[0].test_x, plain)
    assert not torch.equal(s.tasks[1].test_x, plain)
    # a permutation keeps each image's pixel multiset
    assert torch.equal(s.tasks[1].test_x.flatten(1).sort(1).values, plain.flatten(1).sort(1).values)
    s2 = cl_env.make_stream("MNISTPermutations-v0", n_tasks=2)
    assert not torch.equal(s2.tasks[0].test_x, plain), "GEM permutes task 0 too"


def test_many_protocol():
    s = cl_env.make_stream("MANY-v0")
    assert s.n_tasks == 100 and all(t.n_train == 200 for t in s.tasks)


def test_split_mnist_classes_and_sizes():
    s = cl_env.make_stream("SplitMNIST-v0")
    assert s.setting == "class" and s.n_tasks == 5
    for t in range(5):
        assert s.task_classes(t) == (2 * t, 2 * t + 1)
        assert set(s.tasks[t].train_y.unique().tolist()) == {2 * t, 2 * t + 1}
        assert set(s.tasks[t].test_y.unique().tolist()) == {2 * t, 2 * t + 1}
        assert s.tasks[t].n_train == 800  # embedded: 400 per digit after the held-out pool
    r = cl_env.make_stream("SplitMNIST-v0", class_order="random", seed=4)
    assert sorted(c for t in range(5) for c in r.task_classes(t)) == list(range(10))
    with pytest.raises(ValueError, match="permutation of 0..9"):
        cl_env.make_stream("SplitMNIST-v0", class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8])


def test_train_batches_without_gymnasium(small):
    with pytest.warns(UserWarning, match="dropping 15 examples"):
        batches = list(small.train_batches(batch_size=10, seed=0))
    assert len(batches) == 27 and small.dropped(10) == [5, 5, 5]
    assert all(b.x.dtype == torch.float32 and b.x.shape == (10, 1, 28, 28) for b in batches)
    assert [b.t for b in batches if b.task_end] == [0, 1, 2]
    x, y = small.test_set(1)
    assert x.max() <= 1.0 and x.dtype == torch.float32 and len(y) == 60


def test_concat_renumbers_tasks(small, mnist_root):
    other = cl_env.make_stream("SplitMNIST-v0", source="mnist", verify=False, root=mnist_root)
    both = cl_env.concat(small, other)
    assert both.n_tasks == 3 + 5
    assert [t.t for t in both.tasks] == list(range(8))
    assert both.task_classes(3) == (0, 1) and both.setting == "task"
    assert torch.equal(both.tasks[5].train_x, other.tasks[2].train_x)


def test_concat_rejects_mismatched_shapes(small):
    t = small.tasks[0]
    odd = cl_env.TaskStream([cl_env.Task(0, "odd", t.train_x[:, :, :14], t.train_y,
                                         t.test_x[:, :, :14], t.test_y, t.classes)],
                            "odd", 10, "domain")
    with pytest.raises(ValueError, match="shape"):
        cl_env.concat(small, odd)


def test_task_free_and_boundary_free_env(small):
    env = cl_env.ContinualEnv(small, batch_size=5, task_labels=False, task_boundaries=False)
    obs, info = env.reset(seed=0)
    assert set(obs) == {"x"} and "t" not in info
    obs, r, term, trunc, info = env.step(np.zeros(5, dtype=np.int64))
    assert set(info) == {"y", "examples_seen"} and info["examples_seen"] == 5
    assert env.last_t == 0  # the harness still knows where it is


def test_env_rejects_bad_action_and_steps_after_end(small):
    env = cl_env.ContinualEnv(small, batch_size=5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected \\(5,\\)"):
        env.step(np.zeros(4, dtype=np.int64))
    term = False
    while not term:
        _, _, term, _, _ = env.step(np.zeros(5, dtype=np.int64))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(5, dtype=np.int64))


def test_reward_is_fraction_correct(small):
    env = cl_env.ContinualEnv(small, batch_size=5)
    env.reset(seed=0)
    y = env._y[0].copy()
    a = y.copy()
    a[:2] = (a[:2] + 1) % 10
    _, r, _, _, info = env.step(a)
    assert r == pytest.approx(3 / 5) and np.array_equal(info["y"], y)


def test_torch_device_mode_emits_tensors(small):
    env = cl_env.ContinualEnv(small, batch_size=5, device="cpu")
    obs, _ = env.reset(seed=0)
    assert isinstance(obs["x"], torch.Tensor) and obs["x"].shape == (5, 1, 28, 28)
    _, r, _, _, info = env.step(torch.zeros(5, dtype=torch.long))
    assert isinstance(r, torch.Tensor) and 0.0 <= float(r) <= 1.0
    np_env = cl_env.ContinualEnv(small, batch_size=5)
    np_obs, _ = np_env.reset(seed=0)
    assert np.array_equal(np_obs["x"], obs["x"].numpy()), "same seed, same batches in both modes"


def test_gym_make_passes_stream_options(mnist_root):
    env = gym.make("SplitMNIST-v0", batch_size=4, source="mnist", verify=False, root=str(mnist_root))
    assert env.unwrapped.stream.describe()["data"]["source"] == "mnist"
    assert env.action_space.shape == (4,)


def test_unknown_gym_id_suggests():
    with pytest.raises(gym.error.Error, match="MNISTRotations"):
        gym.make("MNISTRotation-v0")


def test_torch_device_mode_refuses_labels_outside_the_classes(small):
    from cl_env.env import InvalidActionError

    for batch in (5, 80):  # the subset test (up to 64 labels) and the reduction (more)
        env = cl_env.ContinualEnv(small, batch_size=batch, device="cpu")
        env.reset(seed=0)
        ok = torch.full((batch,), 9, dtype=torch.long)
        _, r, _, _, _ = env.step(ok)
        for bad in (torch.full((batch,), 10), torch.full((batch,), -1), ok.float(), ok.bool(),
                    torch.cat([ok[:-1], torch.tensor([10])])):
            with pytest.raises(InvalidActionError, match=r"integers in \[0, 10\)"):
                env.step(bad)
        _, r, _, _, info = env.step(torch.as_tensor(env._y[env._i]).clone())
        assert float(r) == 1.0
