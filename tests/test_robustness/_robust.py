"""Helpers of the robustness checks (issue 31), imported by the test files and conftest.py."""

from __future__ import annotations

import shutil


def stream_of(mnist_root) -> dict:
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 100}


def cli_stream_of(mnist_root) -> list[str]:
    return ["--stream", "source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2",
            "train_per_task=100"]


def one_line(err: str) -> str:
    """The error output is one line, no traceback; returns it."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def copy_run(src, dst):
    shutil.copytree(src, dst)
    return dst
