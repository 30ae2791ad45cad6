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


def _agents_import_graph() -> dict[str, set[str]]:
    """Module -> the ``agents`` modules it imports anywhere (top level or inside functions),
    read from the source; a package's ``__init__`` is left out (importing ``agents.base`` runs
    ``agents/__init__``, which is the public facade, not a dependency of ``base``)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "agents"
    mods = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] != "__init__":
            mods[".".join(parts)] = path
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agents"):
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("agents")}
        graph[name] = deps & set(mods)
    return graph


def test_learners_never_import_the_harness_and_agents_has_no_import_circle():
    graph = _agents_import_graph()
    learners = [m for m in graph if not m.startswith("agents.harness")]
    harness = [m for m in graph if m.startswith("agents.harness")]
    assert {"agents.base", "agents.registry", "agents.gem"} <= set(learners)
    assert {"agents.harness.runner", "agents.harness.cli", "agents.harness.report"} <= set(harness)
    for mod in learners:
        assert not any(d.startswith("agents.harness") for d in graph[mod]), (mod, graph[mod])
    # depth-first search for a cycle
    state: dict[str, int] = {}

    def visit(mod, path):
        state[mod] = 1
        for dep in graph[mod]:
            assert state.get(dep) != 1, " -> ".join([*path, mod, dep])
            if dep not in state:
                visit(dep, [*path, mod])
        state[mod] = 2

    for mod in graph:
        if mod not in state:
            visit(mod, [])


def test_public_imports_keep_working():
    out = subprocess.run([sys.executable, "-c",
                          "from agents import AGENTS, Agent, Result, StreamInfo, agent_class, run; "
                          "import agents.harness.runner as r; print(run is r.run)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
