"""The dependency direction of DESIGN.md: cl_env <- memory <- agents."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"cl_env": 0, "memory": 1, "agents": 2}


def _project_imports(path: Path):
    """``(line, imported module, inside a function)`` for every import of a project package in
    ``path``: top level, class bodies and function bodies alike (relative imports resolved)."""
    rel = path.relative_to(ROOT).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package[: len(package) - child.level + 1], *([base] if base else [])])
                names = [base]
            else:
                names = []
            for name in names:
                if name.split(".")[0] in LAYER:
                    out.append((child.lineno, name, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return out


def _package_modules():
    for top in LAYER:
        yield from sorted((ROOT / top).rglob("*.py"))


def test_no_module_of_any_package_imports_upward():
    """cl_env never imports memory or agents, memory never imports agents: every module of the
    three packages, ``__init__`` files and function bodies included."""
    upward = [f"{path.relative_to(ROOT)}:{line} imports {name}"
              for path in _package_modules()
              for line, name, _ in _project_imports(path)
              if LAYER[name.split(".")[0]] > LAYER[path.relative_to(ROOT).parts[0]]]
    assert upward == []


# the Ray task's entry point must import cl-env only after it has put the shipped copy first on
# sys.path (it is sent by value: a module-level import would run before that)
STILL_LAZY = {"agents/harness/sweep/ray/entry.py"}


def test_no_project_import_hides_inside_a_function():
    """No lazy project imports: a module that needs another imports it at the top, so the import
    graph in the source is the real one (a circle shows as a circle, not as a late import)."""
    lazy = [f"{path.relative_to(ROOT)}:{line} imports {name} inside a function"
            for path in _package_modules()
            for line, name, in_function in _project_imports(path)
            if in_function and path.relative_to(ROOT).as_posix() not in STILL_LAZY]
    assert lazy == []

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
    assert {"agents.harness.runner", "agents.harness.cli.run", "agents.harness.report"} <= set(harness)
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


def test_no_module_of_the_three_packages_is_over_400_lines():
    """DESIGN's small pieces: a module over ~400 lines is split along its seams (issue 30)."""
    long = {str(p.relative_to(ROOT)): n for pkg in LAYER for p in sorted((ROOT / pkg).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
