"""Shared fixtures: tiny data files in the real on-disk formats."""

from __future__ import annotations

import pytest

from cl_env.data.fixtures import write_mnist_like


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A data root holding fixture MNIST and Fashion-MNIST in torchvision's layout (gzip)."""
    root = tmp_path_factory.mktemp("data")
    write_mnist_like(root, name="MNIST", n_train=300, n_test=60, gz=True, seed=1)
    write_mnist_like(root, name="FashionMNIST", n_train=300, n_test=60, gz=False, seed=2)
    return root
