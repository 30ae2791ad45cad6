"""Shared pieces of the robustness checks (issue 31): a tiny stream, one finished and one
interrupted run to copy from, a small tmpfs, and the one-line-error assertion."""

from __future__ import annotations

import contextlib
import subprocess
import uuid

import pytest
from _robust import cli_stream_of, stream_of

from agents.harness.runner import run


@pytest.fixture
def stream(mnist_root) -> dict:
    return stream_of(mnist_root)


@pytest.fixture
def cli_stream(mnist_root) -> list[str]:
    return cli_stream_of(mnist_root)


@pytest.fixture(scope="session")
def finished_run(mnist_root, tmp_path_factory):
    """A completed er run directory (copy it before changing anything in it)."""
    out = tmp_path_factory.mktemp("robust") / "finished"
    run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream_of(mnist_root), out=out, progress=False)
    return out


@pytest.fixture(scope="session")
def interrupted_run(mnist_root, tmp_path_factory):
    """An er run stopped after its first task, checkpoint kept (copy it before changing it)."""
    out = tmp_path_factory.mktemp("robust") / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream_of(mnist_root), out=out,
            stop_after_task=0, progress=False)
    return out


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(size, read_only=False)``: a fresh small tmpfs mounted under ``tmp_path`` (unmounted
    afterwards); skips, saying why, where this machine cannot mount one (not root, no tmpfs)."""
    mounted = []

    def mount(size: str, read_only: bool = False):
        where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}): "
                        "the disk-full cases need root and tmpfs")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
