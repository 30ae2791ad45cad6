"""Protocols every env offers: several passes per task, gradual task boundaries, a validation
split; each recorded in a run's configuration, seeded, and resumable."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import cl_env
from agents import run
from cl_env.error import CLEnvError
from cl_env.registration import resolve_stream_kwargs
from cl_env.stream import ramp_interleave

KW = {"n_tasks": 3, "train_per_task": 200}


def _emitted(env, seed):
    """Per step: (task id, the batch's pool rows); every step of one reset."""
    obs, info = env.reset(seed=seed)
    u = env.unwrapped
    b = u.batch_size
    steps, ends = [], []
    for i in range(u.n_batches):
        rows = u._rows[i * b:(i + 1) * b].tolist()
        _, _, done, _, info = env.step(np.zeros(b, dtype=np.int64))
        steps.append((info["t"], rows))
        ends.append(info["task_end"])
    assert done
    return steps, ends


def test_passes_emit_each_example_once_per_pass_in_fresh_orders():
    env = gym.make("MNISTRotations-v0", passes=3, **KW)
    steps, ends = _emitted(env, seed=0)
    assert len(steps) == 3 * 3 * 20  # tasks x passes x batches of 10
    for t in range(3):
        rows = [r for tt, rs in steps if tt == t for r in rs]
        passes = [rows[k * 200:(k + 1) * 200] for k in range(3)]
        assert all(sorted(p) == sorted(passes[0]) for p in passes) and len(set(passes[0])) == 200
        assert passes[0] != passes[1] != passes[2]  # a fresh order each pass
    assert [tt for tt, _ in steps] == sorted(tt for tt, _ in steps)  # the next task only after all passes
    assert [i for i, e in enumerate(ends) if e] == [59, 119, 179]
    again, _ = _emitted(gym.make("MNISTRotations-v0", passes=3, **KW), seed=0)
    assert again == steps


def test_gradual_boundaries_mix_batches_over_a_window_and_keep_every_example_once():
    sharp, _ = _emitted(gym.make("MNISTRotations-v0", **KW), seed=2)
    env = gym.make("MNISTRotations-v0", transition=200, **KW)
    steps, ends = _emitted(env, seed=2)
    assert sorted(r for _, rs in steps for r in rs) == sorted(r for _, rs in sharp for r in rs)
    for t in range(3):  # a task's batches keep their order; each batch is one task's
        assert [rs for tt, rs in steps if tt == t] == [rs for tt, rs in sharp if tt == t]
    seq = [tt for tt, _ in steps]
    assert seq != sorted(seq)  # mixed somewhere
    # windows of 20 batches: task 0's last 10 with task 1's first 10, task 1's last 10 with
    # task 2's first 10; the first and last 10 batches are one task's
    assert seq[:10] == [0] * 10 and set(seq[10:30]) == {0, 1} and set(seq[30:50]) == {1, 2}
    assert seq[50:] == [2] * 10
    for t in range(3):
        last = max(i for i, tt in enumerate(seq) if tt == t)
        assert ends[last] and sum(ends[i] for i, tt in enumerate(seq) if tt == t) == 1
    assert _emitted(gym.make("MNISTRotations-v0", transition=0, **KW), seed=2)[0] == sharp


def test_ramp_interleave_ramps_from_one_task_to_the_next():
    counts = [40, 40]
    seq = np.repeat([0, 1], counts)
    share = np.zeros(40)
    for seed in range(300):
        out = ramp_interleave(seq, counts, 20, np.random.default_rng(seed))
        assert sorted(out.tolist()) == seq.tolist()
        share += out[20:60] == 1
    share /= 300
    first, middle, last = share[:8].mean(), share[16:24].mean(), share[-8:].mean()
    assert first < 0.25 < middle < 0.75 < last, (first, middle, last)
    assert ramp_interleave(seq, counts, 0, np.random.default_rng(0)).tolist() == seq.tolist()


def test_a_validation_split_is_held_out_of_training_and_seeded():
    s = cl_env.make_stream("MNISTRotations-v0", validation_fraction=0.1, **KW)
    env = gym.make("MNISTRotations-v0", validation_fraction=0.1, **KW)
    steps, _ = _emitted(env, seed=0)
    u = env.unwrapped
    for t, task in enumerate(u.stream.tasks):
        assert len(task.val_index) == 20 and task.n_train == 180
        assert not set(task.val_index.tolist()) & set(task.train_index.tolist())
        assert len({r for tt, rs in steps if tt == t for r in rs}) == 180  # only the kept ones train
    x, y = s.validation_set(0)
    assert x.shape == (20, 1, 28, 28) and x.max() <= 1.0 and y.dtype.is_floating_point is False
    again = cl_env.make_stream("MNISTRotations-v0", validation_fraction=0.1, **KW)
    assert all(a.val_index.tolist() == b.val_index.tolist() for a, b in zip(s.tasks, again.tasks, strict=True))
    other = cl_env.make_stream("MNISTRotations-v0", validation_fraction=0.1, seed=1, **KW)
    assert other.tasks[0].val_index.tolist() != s.tasks[0].val_index.tolist()
    assert s.metadata["validation_per_task"] == [20, 20, 20]
    with pytest.raises(ValueError, match="no validation split"):
        cl_env.make_stream("MNISTRotations-v0", **KW).validation_set(0)


def test_validation_images_are_the_held_out_training_images():
    s = cl_env.make_stream("MNISTRotations-v0", validation_fraction=0.25, **KW)
    full = cl_env.make_stream("MNISTRotations-v0", **KW)
    for a, b in zip(s.tasks, full.tasks, strict=True):
        x, y = s.validation_set(a.t, as_uint8=True)
        kept_x, kept_y = a.train_examples()
        all_x, all_y = b.train_examples()
        joined = np.concatenate([kept_x.reshape(len(kept_x), -1).numpy(), x.reshape(len(x), -1).numpy()])
        assert sorted(map(bytes, joined)) == sorted(map(bytes, all_x.reshape(len(all_x), -1).numpy()))
        assert sorted(np.concatenate([kept_y.numpy(), y.numpy()]).tolist()) == sorted(all_y.tolist())


def test_protocol_options_are_recorded_only_when_set_and_checked():
    plain = resolve_stream_kwargs("MNISTRotations-v0", {})
    assert not {"passes", "transition", "validation_fraction"} & set(plain)  # old identities unchanged
    assert resolve_stream_kwargs("MNISTRotations-v0", {"passes": 1, "transition": 0}) == plain
    rec = resolve_stream_kwargs("MNISTRotations-v0", {"passes": 3, "transition": 100, "validation_fraction": 0.1})
    assert rec["passes"] == 3 and rec["transition"] == 100 and rec["validation_fraction"] == 0.1
    for bad in ({"passes": 0}, {"transition": -1}, {"validation_fraction": 1.5}):
        with pytest.raises(CLEnvError):
            gym.make("MNISTRotations-v0", **bad, **KW)


def test_a_run_records_the_protocol_reports_validation_and_resumes(tmp_path):
    kw = {"stream_kwargs": {**KW, "passes": 2, "transition": 60, "validation_fraction": 0.1},
          "agent": "er", "budget": 20, "progress": False, "log": None}
    whole = run("MNISTRotations-v0", out=tmp_path / "whole", **kw)
    assert whole.config["stream_kwargs"]["passes"] == 2
    V = np.array(whole.validation_accuracy_matrix)
    assert V.shape == (3, 3) and whole.validation_retained_accuracy == pytest.approx(V[-1].mean())
    assert whole.data["validation_per_task"] == [20, 20, 20]
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run("MNISTRotations-v0", out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    assert resumed.validation_accuracy_matrix == whole.validation_accuracy_matrix
    plain = run("MNISTRotations-v0", agent="online", stream_kwargs=KW, progress=False, log=None)
    assert plain.validation_accuracy_matrix is None and plain.validation_retained_accuracy is None
