"""A tiny two-task stream on fixture files, shared by the agent tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny(mnist_root):
    """``run`` keywords for a two-task rotation stream on fixture MNIST (200 examples per task)."""
    return {"env_id": "MNISTRotations-v0",
            "stream_kwargs": {"source": "mnist", "root": str(mnist_root), "n_tasks": 2,
                              "train_per_task": 200}}
