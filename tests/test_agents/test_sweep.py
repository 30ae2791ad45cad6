"""``cl-env sweep``: the grid, local processes, skipping finished cells, resuming, Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from agents.harness.cli import main
from agents.harness.sweep import expand, load_config, sweep


def _config(mnist_root, out, **extra) -> dict:
    return {"out": str(out), "envs": ["MNISTRotations-v0"], "agents": ["online", "er"], "budgets": [20],
            "seeds": [0], "stream": {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2,
                                     "train_per_task": 100}, **extra}


def test_expand_skips_what_an_agent_cannot_use_and_runs_memoryless_agents_once():
    cells, skipped = expand({"envs": ["MNISTRotations-v0"], "agents": ["online", "er"],
                             "memories": [None, "srm", "self_recall"], "budgets": [100, 200], "seeds": [0, 1]})
    assert sum(c.agent == "online" for c in cells) == 2           # once per seed, no budget
    assert sum(c.agent == "er" for c in cells) == 2 * 2 * 2       # {default, srm} x budgets x seeds
    assert any("er + self_recall" in s for s in skipped)


def test_yaml_and_toml_configs(tmp_path):
    (tmp_path / "a.yaml").write_text("envs: [MNISTRotations-v0]\nagents: [er]\nbudgets: [50]\nseeds: [0, 1]\n")
    (tmp_path / "a.toml").write_text('envs = ["MNISTRotations-v0"]\nagents = ["er"]\nbudgets = [50]\nseeds = [0, 1]\n')
    assert load_config(tmp_path / "a.yaml") == load_config(tmp_path / "a.toml")
    (tmp_path / "bad.yaml").write_text("envs: [MNISTRotations-v0]\nagent: [er]\n")
    with pytest.raises(ValueError, match="unknown keys \\['agent'\\]"):
        load_config(tmp_path / "bad.yaml")


def test_local_sweep_runs_skips_finished_and_resumes(mnist_root, tmp_path):
    cfg = _config(mnist_root, tmp_path / "runs")
    records = sweep(cfg, workers=2, log=lambda *_: None)
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    results = sorted((tmp_path / "runs").rglob("result.json"))
    assert len(results) == 2
    assert sweep(cfg, workers=2, log=lambda *_: None) == []        # finished cells are skipped
    # an interrupted cell (checkpoint, no result) resumes to the uninterrupted result
    er_dir = next(p.parent for p in results if "/er-" in str(p))
    before = json.loads((er_dir / "result.json").read_text())["accuracy_matrix"]
    (er_dir / "result.json").unlink()
    from agents.harness.runner import run
    shutil.rmtree(er_dir)
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", agent="er", budget=20.0, seed=0, stream_kwargs=cfg["stream"], out=er_dir,
            stop_after_task=0, progress=False)
    recs = sweep(cfg, workers=1, log=lambda *_: None)
    assert len(recs) == 1 and recs[0]["status"] == "completed"
    assert json.loads((er_dir / "result.json").read_text())["accuracy_matrix"] == before


def test_sweep_cli_dry_run_and_compare(mnist_root, tmp_path, capsys):
    import yaml

    cfg = _config(mnist_root, tmp_path / "runs")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(tmp_path / "s.yaml"), "--dry-run"]) == 0
    assert "2 cells" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "s.yaml"), "--workers", "1"]) == 0
    assert main(["compare", str(tmp_path / "runs")]) == 0
    assert "| MNISTRotations-v0 | mnist | er |" in capsys.readouterr().out
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2


@pytest.mark.expensive
def test_ray_backend(mnist_root, tmp_path, ray_installed):
    # in a fresh interpreter: ray.init(num_cpus=2) starts a local instance
    code = (
        "import json, sys\n"
        "from agents.harness.sweep import sweep\n"
        f"cfg = json.loads({json.dumps(json.dumps(_config(mnist_root, tmp_path / 'runs', agents=['er'])))})\n"
        "recs = sweep(cfg, workers=2, backend='ray', log=print)\n"
        "import ray; ray.shutdown()\n"
        "sys.exit(0 if len(recs) == 1 and recs[0]['status'] == 'completed' else 1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    from agents.harness.results import find_results

    assert len(find_results([tmp_path / "runs"])[0]) == 1   # the driver's copy; .storage snapshots are not read


def test_a_settings_axis_of_several_memories_options_skips_the_pairs_it_does_not_fit():
    """``memories: [reservoir, srm]`` with ``settings: [{memory.tau: 0.5}]``: the tau setting is
    SRM's, so (er, reservoir, tau) is skipped and named, as the memories axis skips an agent's
    misfits; a key no memory of the grid takes is still an error (a typo, not a skip)."""
    import pytest

    from agents.harness.sweep.grid import expand
    from cl_env.error import UnknownNameError

    base = {"envs": ["MNISTRotations-v0"], "agents": ["er", "online"], "memories": [None, "srm"], "budgets": [50]}
    cells, skipped = expand({**base, "settings": [{}, {"memory.tau": 0.5}]})
    runs = sorted(((c.agent, c.memory, c.settings.get("memory.tau")) for c in cells), key=str)
    assert runs == sorted([("er", None, None), ("er", "srm", None), ("er", "srm", 0.5), ("online", None, None)], key=str)
    assert any("er + reservoir" in s and "tau" in s for s in skipped)
    assert any("online + no memory" in s for s in skipped)
    with pytest.raises(UnknownNameError, match="taux"):
        expand({**base, "settings": [{"memory.taux": 0.5}]})
