"""The Ray sweep's pieces without Ray: storage snapshots, delivery on the driver, the version
check, the runtime_env, and the config keys (the cluster itself: test_ray_cluster.py)."""

from __future__ import annotations

import json

import pytest

from agents.harness.sweep import Cell, check_config, plan_threads
from agents.harness.sweep.ray import task as cluster_task
from agents.harness.sweep.ray.driver import deliver, runtime_env
from agents.harness.sweep.ray.task import Storage, environment, environment_mismatch


def _run_dir(tmp_path, name, steps):
    d = tmp_path / name
    d.mkdir()
    (d / "checkpoint.pt").write_bytes(f"ckpt-{steps}".encode())
    (d / "config.json").write_text("{}")
    (d / ".checkpoint.pt.123.tmp").write_text("partial")  # never copied
    return d


@pytest.mark.parametrize("url", ["local", "memory://cl-env-test-storage"])
def test_storage_snapshots_attempts_and_restore(tmp_path, url):
    store = Storage(str(tmp_path / "storage") if url == "local" else f"{url}/{tmp_path.name}")
    key = "Env/er-reservoir-b20-abcdef12/seed0"
    assert store.restore(key, tmp_path) is None                       # nothing yet: start afresh
    assert store.start_attempt(key, "attempt-a", {"host": "n1"}) == 1
    assert store.start_attempt(key, "attempt-b", {"host": "n2"}) == 2
    store.save(key, "attempt-a", _run_dir(tmp_path, "a10", 10), 10, {"host": "n1"})
    store.save(key, "attempt-a", _run_dir(tmp_path, "a20", 20), 20, {"host": "n1"})
    store.save(key, "attempt-b", _run_dir(tmp_path, "b15", 15), 15, {"host": "n2"})
    snaps = store.snapshots(key)
    assert [(s["attempt"], s["steps"]) for s in snaps] == [("attempt-b", 15), ("attempt-a", 20)]  # a's 10 dropped
    assert snaps[-1]["files"] == ["checkpoint.pt", "config.json"]     # no temporaries
    # an incomplete snapshot (no snapshot.json: its writer died mid-copy) is never restored
    store.fs.makedirs(store.path(key, "attempt-b", "0000000099"), exist_ok=True)
    store.fs.pipe_file(store.path(key, "attempt-b", "0000000099", "checkpoint.pt"), b"half")
    target = tmp_path / "restore"
    target.mkdir()
    snap = store.restore(key, target)
    assert (snap["attempt"], snap["steps"]) == ("attempt-a", 20)
    assert (target / "checkpoint.pt").read_bytes() == b"ckpt-20"
    # a final snapshot at the same step sorts after the checkpoint's
    store.save(key, "attempt-a", _run_dir(tmp_path, "a20f", 20), 20, {"host": "n1"}, final=True)
    assert store.snapshots(key)[-1]["final"] is True


def test_deliver_writes_results_atomically_and_only_plain_names(tmp_path):
    rec = {"cell": {}, "status": "completed", "files": {
        "result.json": b'{"x": 1}', "progress.jsonl": b"{}\n", "../escape.txt": b"no", ".hidden": b"no"}}
    out = deliver(dict(rec), tmp_path / "cell")
    assert "files" not in out and out["dir"] == str(tmp_path / "cell")
    assert sorted(p.name for p in (tmp_path / "cell").iterdir()) == ["progress.jsonl", "result.json"]
    assert not (tmp_path / "escape.txt").exists()
    failed = deliver({"cell": {}, "status": "failed", "error": "WorkerCrashedError: boom"}, tmp_path / "cell2")
    assert (tmp_path / "cell2" / "error.txt").read_text() == "WorkerCrashedError: boom\n"
    assert failed["status"] == "failed"


def test_environment_mismatch_names_what_differs_and_the_fix():
    env = environment()
    assert set(env) >= {"python", "code", "torch", "numpy", "gymnasium", "quadprog"}
    assert environment_mismatch(env, dict(env)) is None
    msg = environment_mismatch(env, {**env, "torch": "2.1.0"})
    assert f"torch 2.1.0 (the driver has {env['torch']})" in msg and f"pip install torch=={env['torch']}" in msg
    msg = environment_mismatch(env, {**env, "code": "0" * 16})
    assert "py_modules" in msg and "pip install" not in msg


def test_a_cell_on_a_node_with_other_versions_fails_before_running(tmp_path):
    c = Cell("MNISTRotations-v0", "er", None, 20.0, 0)
    from dataclasses import asdict

    rec = cluster_task.cell_task(asdict(c), "k", str(tmp_path / "s"), 1, {**environment(), "numpy": "0.0.1"})
    assert rec["status"] == "failed" and "EnvironmentMismatch" in rec["error"] and "numpy" in rec["error"]
    assert not (tmp_path / "s").exists()                              # nothing ran, nothing written


def test_runtime_env_ships_the_code_threads_and_optionally_pinned_requirements():
    from importlib import metadata

    env = runtime_env(3, {"env_vars": {"TMPDIR": "/scratch"}, "py_modules": ["/x/my_agents"]})
    assert [m.rsplit("/", 1)[-1] for m in env["py_modules"]] == ["cl_env", "memory", "agents", "my_agents"]
    assert env["env_vars"] == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3",
                               "TMPDIR": "/scratch"}
    assert "pip" not in env
    pins = runtime_env(1, ship_requirements=True)["pip"]
    assert f"torch=={metadata.version('torch')}" in pins and f"numpy=={metadata.version('numpy')}" in pins
    assert all("==" in p for p in pins)


def test_config_keys_for_clusters_are_checked(tmp_path):
    base = {"envs": ["MNISTRotations-v0"], "agents": ["er"]}
    check_config({**base, "cpus_per_cell": 2, "gpus_per_cell": 0.5, "storage": "s3://b/p", "checkpoint_every": 100,
                  "runtime_env": {"env_vars": {}}, "ship_requirements": True})
    for bad, key in (({"cpus_per_cell": 0}, "cpus_per_cell"), ({"gpus_per_cell": -1}, "gpus_per_cell"),
                     ({"storage": 3}, "storage"), ({"runtime_env": "x"}, "runtime_env"),
                     ({"ship_requirements": "yes"}, "ship_requirements"), ({"checkpoint_every": 0}, "checkpoint_every")):
        with pytest.raises(ValueError, match=key):
            check_config({**base, **bad})
    # cpus_per_cell sets the local workers' threads too
    import os

    cores = os.cpu_count()
    workers, threads = plan_threads(None, 8, log=lambda *_: None, cpus_per_cell=1)
    assert threads == 1 and 1 <= workers <= cores


def test_results_under_hidden_directories_are_not_read(tmp_path):
    from agents.harness.results import find_results

    (tmp_path / ".storage" / "c").mkdir(parents=True)
    (tmp_path / ".storage" / "c" / "result.json").write_text(json.dumps({"not": "read"}))
    runs, skipped = find_results([tmp_path])
    assert runs == [] and skipped == []
