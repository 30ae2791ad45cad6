"""Is this cl-env's ``agents`` and ``memory``? A start-up check for top-level name collisions.

cl-env installs the top-level packages ``cl_env``, ``memory`` and ``agents``. Other distributions
on PyPI install ``agents`` (``openai-agents``, an older ``agents``) or ``memory``; pip merges them
into one ``site-packages/agents/`` without a warning, and cl-env then fails far from the cause
(an ImportError about ``agents.models``). :func:`check_top_level_packages` finds every other
installed distribution that claims one of those names and :func:`require_own_packages` (called
first thing by ``import memory`` and ``import agents``) stops with one message naming it and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

OWN = ("agents", "memory")
OWN_DIST = "cl_env"  # this distribution's normalised name, as its dist-info directory spells it
CONSOLE_SCRIPTS = ("cl-env", "cl-env.exe")  # the executable names pip writes for ``[project.scripts]``


def _top_level(dist_info: Path) -> set[str]:
    """The top-level names a ``*.dist-info`` directory installs (top_level.txt, else RECORD)."""
    top = dist_info / "top_level.txt"
    if top.is_file():
        return set(top.read_text(errors="replace").split())
    record = dist_info / "RECORD"
    if not record.is_file():
        return set()
    names = set()
    for line in record.read_text(errors="replace").splitlines():
        first = line.split(",", 1)[0].split("/", 1)[0]
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


_checked: dict[tuple[str, ...], dict[str, list[str]]] = {}  # per path list: scanned once a process


def check_top_level_packages(paths: list[str] | None = None) -> dict[str, list[str]]:
    """``{name: [distribution, ...]}`` for every distribution other than cl-env that installs a
    top-level ``agents`` or ``memory`` on ``paths`` (default ``sys.path``). The console script,
    ``import memory`` and ``import agents`` all ask: the directories are read once per path list."""
    key = tuple(sys.path if paths is None else paths)
    if key not in _checked:
        _checked[key] = _scan(key)
    return _checked[key]


def _scan(paths: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in paths:
        root = Path(entry or ".")
        if not root.is_dir():
            continue
        for info in sorted(root.glob("*.dist-info")):
            dist = info.name[: -len(".dist-info")]
            if dist.split("-")[0].lower().replace(".", "_") == OWN_DIST:
                continue
            for name in sorted(_top_level(info) & set(OWN)):
                found.setdefault(name, []).append(dist)
    return found


class PackageConflictError(ImportError):
    """Another installed distribution claims a top-level package cl-env needs."""


def conflict_message(found: dict[str, list[str]]) -> str:
    parts = [f"'{name}' is also installed by {', '.join(dists)}" for name, dists in sorted(found.items())]
    dists = sorted({d.split("-")[0] for ds in found.values() for d in ds})
    return (f"cl-env's top-level package {'; '.join(parts)}: both write into the same folder and "
            f"cl-env cannot run. Fix: pip uninstall {' '.join(dists)} && pip install --force-reinstall "
            f"--no-deps cl-env (or install cl-env in a virtual environment of its own)")


def require_own_packages() -> None:
    """Stop when another distribution claims ``agents`` or ``memory`` (``import memory`` and
    ``import agents`` call it first thing).

    In the ``cl-env`` console script (which imports ``agents.harness.cli`` directly) the stop is
    one line on stderr and exit code 2, as for every other user error; in a Python session it is
    a :class:`PackageConflictError` naming the other distribution and the fix.
    """
    found = check_top_level_packages()
    if not found:
        return
    if Path(sys.argv[0] if sys.argv else "").name in CONSOLE_SCRIPTS:
        print(f"error: {conflict_message(found)}", file=sys.stderr)
        raise SystemExit(2)
    raise PackageConflictError(conflict_message(found))
