"""Callbacks see read-only views of a run and cannot change it (issue 30: logging as callbacks)."""

from __future__ import annotations

import numpy as np
import pytest

from agents import run
from agents.harness.run import Callback, TaskEnd, TrainStep


@pytest.fixture
def tiny(mnist_root):
    return {"env_id": "MNISTRotations-v0", "budget": 20, "stream_kwargs": {
        "source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 60}}


class Recorder(Callback):
    """Keeps what it is shown, and tries to change it."""

    def __init__(self):
        self.events: list[tuple] = []

    def on_start(self, config, resumed_steps):
        self.events.append(("start", config["agent"], resumed_steps))
        with pytest.raises(TypeError):
            config["agent"] = "other"  # a read-only mapping

    def on_train_step(self, step: TrainStep):
        self.events.append(("step", step.steps, dict(step.losses)))

    def on_task_end(self, view: TaskEnd):
        self.events.append(("task", view.task, view.accuracy[view.task].copy(), view.online_accuracy))
        with pytest.raises(ValueError):
            view.accuracy[view.task, 0] = 2.0  # a read-only copy
        for images in view.visuals.values():
            images.zero_()  # a copy: the memory's own images are untouched

    def on_end(self, final, examples, status):
        self.events.append(("end", dict(final), examples, status))


def test_callbacks_see_every_event_and_cannot_change_the_run(tiny):
    plain = run(agent="er", **tiny, log_every=3)
    rec = Recorder()
    watched = run(agent="er", **tiny, log_every=3, callbacks=[rec])
    assert watched.accuracy_matrix == plain.accuracy_matrix
    assert watched.online_accuracy == plain.online_accuracy and watched.config_hash == plain.config_hash
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("task") == 2
    assert rec.events[0] == ("start", "er", 0)
    steps = [e[1] for e in rec.events if e[0] == "step"]
    assert steps == list(range(3, 12 + 1, 3)) and all("loss" in e[2] for e in rec.events if e[0] == "step")
    rows = [e for e in rec.events if e[0] == "task"]
    for t, (_, task, row, online) in enumerate(rows):
        assert task == t and np.array_equal(row, np.array(watched.accuracy_matrix[t]))
        assert 0.0 <= online <= 1.0
    _, final, examples, status = rec.events[-1]
    assert status == "completed" and examples == 120
    assert final["retained_accuracy"] == pytest.approx(watched.retained_accuracy)
