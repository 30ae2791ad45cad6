"""The dependency direction of DESIGN.md: cl_env <- memory <- agents."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = (
    "import sys, importlib; importlib.import_module({mod!r}); "
    "bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r}); print(bad)"
)


@pytest.mark.parametrize(
    ("mod", "forbidden"),
    [
        ("cl_env", {"agents", "memory", "tensorboard", "stable_baselines3"}),
    ],
)
def test_import_does_not_pull_upper_layers(mod, forbidden):
    out = subprocess.run([sys.executable, "-c", CHECK.format(mod=mod, forbidden=forbidden)],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_memory_does_not_import_agents():
    out = subprocess.run([sys.executable, "-c", CHECK.format(mod="memory", forbidden={"agents"})],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
