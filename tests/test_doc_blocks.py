"""Every Python block of README.md and docs/ runs as written (issue 21).

Blocks that train a whole benchmark (they call ``run(``) take tens of seconds and run in the
``expensive`` step; the others run in the fast suite. Each block runs in a fresh namespace in a
temporary working directory, so what it writes (``runs/...``) stays there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks():
    for page in PAGES:
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)):
            slow = "run(" in code
            marks = [pytest.mark.expensive] if slow else []
            yield pytest.param(code, id=f"{page.relative_to(ROOT)}#{i}", marks=marks)


@pytest.mark.parametrize("code", list(_blocks()))
def test_python_block_runs(code, tmp_path, monkeypatch):
    if "fashion_mnist" in code and not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    from cl_env.error import DataNotFoundError

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__doc_block__"}
    try:
        exec(compile(code, "<doc block>", "exec"), namespace)  # noqa: S102 - our own docs
    except DataNotFoundError as exc:  # CIFAR, SVHN, Omniglot, MiniImageNet are not on this machine
        pytest.skip(f"the block needs real data that is not installed here: {exc}")
