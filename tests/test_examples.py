"""Every script in examples/ runs (in its --quick form)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    args = [sys.executable, str(script), "--quick"]
    if "--out" in script.read_text():
        args += ["--out", str(tmp_path / "runs")]
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert any(k in out.stdout for k in ("retained", "RA ", "-ELBO", "distilled")), out.stdout[-500:]
