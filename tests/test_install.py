"""Top-level name collisions: another distribution that installs `agents` or `memory` is named,
with the fix, before anything breaks far from the cause."""

from __future__ import annotations

import subprocess
import sys

from cl_env.install import check_top_level_packages, conflict_message


def _fake_dist(root, name, version, top_level=None, record=None):
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if top_level is not None:
        (info / "top_level.txt").write_text("\n".join(top_level) + "\n")
    if record is not None:
        (info / "RECORD").write_text("\n".join(f"{p},," for p in record) + "\n")
    return info


def test_foreign_distributions_claiming_agents_or_memory_are_named(tmp_path):
    _fake_dist(tmp_path, "openai_agents", "0.1.0", record=["agents/__init__.py", "agents/run.py"])
    _fake_dist(tmp_path, "memory", "0.2", top_level=["memory"])
    _fake_dist(tmp_path, "harmless", "1.0", top_level=["harmless"])
    _fake_dist(tmp_path, "cl_env", "0.1.0", top_level=["agents", "cl_env", "memory"])  # our own: fine
    found = check_top_level_packages([str(tmp_path)])
    assert found == {"agents": ["openai_agents-0.1.0"], "memory": ["memory-0.2"]}
    msg = conflict_message(found)
    assert "openai_agents-0.1.0" in msg and "pip uninstall memory openai_agents" in msg
    assert check_top_level_packages([str(tmp_path / "nothing")]) == {}


def test_the_cli_and_imports_stop_with_one_line_on_a_collision(tmp_path):
    _fake_dist(tmp_path, "openai_agents", "0.1.0", record=["agents/__init__.py"])
    env_path = f"{tmp_path}"
    # what the console script does: argv[0] is the `cl-env` executable, `agents.harness.cli:main` imported
    code = (f"import sys; sys.path.append({env_path!r}); sys.argv[0] = '/usr/local/bin/cl-env'\n"
            "from agents.harness.cli import main\nsys.exit(main())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: cl-env's top-level package 'agents' is also installed by openai_agents-0.1.0")
    r = subprocess.run([sys.executable, "-c", f"import sys; sys.path.append({env_path!r}); import memory"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "PackageConflictError" in r.stderr and "openai_agents" in r.stderr
