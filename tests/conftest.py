"""Shared fixtures: tiny data files in the real on-disk formats of every source."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from cl_env.data import fixtures

# property tests: the same examples on every run (no flaky CI), no per-example deadline on a
# loaded 2-core machine
settings.register_profile("cl-env", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("cl-env")


FAULTS = Path(__file__).resolve().parent / "faults"  # test-side fault injection (sitecustomize)


def fault_env(spec: str) -> dict[str, str]:
    """Environment variables that make every Python process started with them SIGKILL itself
    after a checkpoint (``tests/faults/kill_after_checkpoint.py`` says how ``spec`` reads)."""
    path = os.pathsep.join([str(FAULTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"CL_ENV_TEST_KILL_AFTER_CHECKPOINT": spec, "PYTHONPATH": path}


@pytest.fixture
def kill_after_checkpoint(monkeypatch):
    """``arm(spec)``: processes this test starts from now on (sweep workers, CLI runs) kill
    themselves at a known checkpoint; ``arm(spec, inherit=False)`` only returns the variables, for
    one process's environment. This process itself is never armed."""

    def arm(spec: str, inherit: bool = True) -> dict[str, str]:
        env = fault_env(spec)
        if inherit:
            for key, value in env.items():
                monkeypatch.setenv(key, value)
        return env

    return arm


@pytest.fixture
def ray_installed():
    """Skip (saying why, also on stderr for CI's log) unless Ray and fsspec, the Ray backend's
    extra, are importable."""
    import importlib.util
    import sys

    missing = [m for m in ("ray", "fsspec") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{'/'.join(missing)} not installed (pip install 'cl-env[ray]')"
        print(f"SKIPPED REASON: {reason}", file=sys.stderr)
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test's caches (decoded images, MNIST-5k, evaluators) live in the test run's own
    folder, whichever tests run; the variable is restored afterwards."""
    import os

    before = os.environ.get("CL_ENV_CACHE")
    os.environ["CL_ENV_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("CL_ENV_CACHE", None)
    else:
        os.environ["CL_ENV_CACHE"] = before


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory):
    """A data root holding fixture MNIST and Fashion-MNIST in torchvision's layout (gzip)."""
    root = tmp_path_factory.mktemp("data")
    fixtures.write_mnist_like(root, name="MNIST", n_train=300, n_test=60, gz=True, seed=1)
    fixtures.write_mnist_like(root, name="FashionMNIST", n_train=300, n_test=60, gz=False, seed=2)
    return root


@pytest.fixture(scope="session")
def image_root(tmp_path_factory):
    """A data root holding fixture CIFAR-10/100, SVHN, Omniglot and MiniImageNet."""
    root = tmp_path_factory.mktemp("images")
    fixtures.write_cifar(root, which="cifar10", train_per_class=20, test_per_class=4, seed=3)
    fixtures.write_cifar(root, which="cifar100", train_per_class=10, test_per_class=2, seed=4)
    fixtures.write_svhn(root, n_train=60, n_test=20, seed=5)
    fixtures.write_omniglot(root, chars_per_alphabet=2, images_per_char=10, seed=6)
    fixtures.write_miniimagenet(root, per_class=10, seed=7)
    return root


@pytest.fixture(scope="session")
def stream_kwargs(mnist_root, image_root, tmp_path_factory):
    """Per registered id, the options that point it at fixture files (MNIST ids use the embedded
    real MNIST-5k and need none)."""
    img = {"root": str(image_root)}
    return {
        "IncCIFAR100-v0": {**img, "verify": False},
        "IncCIFAR100LongTerm-v0": {**img, "verify": False, "cifar10_examples": 450},
        "SplitCIFAR10-v0": {**img, "verify": False},
        "IncOmniglot-v0": img,
        "SplitMiniImageNet-v0": img,
        "SeqFashionMNIST-v0": {"root": str(mnist_root), "verify": False},
        "SVHNToMNIST-v0": {**img, "verify": False},
    }


@pytest.fixture(scope="session")
def tiny(mnist_root):
    """``run`` keywords for a two-task rotation stream on fixture MNIST (200 examples per task)."""
    return {"env_id": "MNISTRotations-v0",
            "stream_kwargs": {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2,
                              "train_per_task": 200}}
