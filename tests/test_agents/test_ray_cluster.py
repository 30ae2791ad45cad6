"""A sweep on a two-node Ray cluster started by the test, sharing no output directory, with one
node's raylet killed mid-sweep: every result lands on the driver, once, equal to a plain run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agents.harness.results import find_results, load_result

CELLS = 4


def _config(mnist_root, out, storage) -> dict:
    return {"out": str(out), "storage": str(storage), "envs": ["MNISTRotations-v0"], "agents": ["er"],
            "budgets": [20], "seeds": list(range(CELLS)), "retries": 3, "checkpoint_every": 5,
            "stream": {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 5,
                       "train_per_task": 300}}


# The driver: a head (1 CPU) and a second node (1 CPU), each with its own scratch directory; the
# sweep runs on both; a watcher kills the second node's raylet as soon as one of its cells has
# written a checkpoint snapshot, so that cell's retry must resume on the head.
DRIVER = textwrap.dedent("""
    import json, sys, threading, time
    from ray.cluster_utils import Cluster
    from agents.harness.sweep.ray.task import Storage
    from agents.harness.sweep import sweep

    cfg, head_dir, node_dir, report = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    fast = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "env_vars": {"CL_ENV_WORK_DIR": head_dir}, "_system_config": fast})
    node = cluster.add_node(num_cpus=1, env_vars={"CL_ENV_WORK_DIR": node_dir})
    cluster.wait_for_nodes()
    killed = {}
    store = Storage(cfg["storage"])

    def watch():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for path in store.fs.glob(store.path("**", "snapshot.json")):
                snap = json.loads(store.fs.cat_file(path))
                if snap["node"].get("node_id") == node.node_id and not snap["final"]:
                    node.kill_raylet()
                    killed.update(node_id=node.node_id, after=snap["steps"], attempt=snap["attempt"])
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    records = sweep(cfg, backend="ray", address=cluster.address, log=print)
    watcher.join(timeout=5)
    import ray
    ray.shutdown()
    cluster.shutdown()
    json.dump({"records": records, "killed": killed, "head": cluster.head_node.node_id if cluster.head_node
               else None}, open(report, "w"), default=str)
""")


@pytest.mark.expensive
def test_two_node_sweep_survives_a_killed_raylet(mnist_root, tmp_path, ray_installed):
    out, storage = tmp_path / "driver-out", tmp_path / "storage"
    head_dir, node_dir = tmp_path / "head-scratch", tmp_path / "node-scratch"
    cfg = _config(mnist_root, out, storage)
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cfg), str(head_dir), str(node_dir), str(report)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and report.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(report.read_text())
    records, killed = rep["records"], rep["killed"]
    print("\n".join(line for line in proc.stdout.splitlines()
                    if line.startswith(("|", "sweep summary", "[", "ray:", "retrying"))), f"\nkilled: {killed}")
    assert killed, "the second node never wrote a snapshot: the kill did not happen mid-sweep"
    assert len(records) == CELLS and all(r["status"] == "completed" for r in records), proc.stdout[-3000:]

    # every result is on the driver, once per cell (the .storage snapshots are not results)
    runs, skipped = find_results([out])
    assert not skipped and len(runs) == CELLS
    assert sorted(r.seed for r in runs) == list(range(CELLS))
    assert all(str(r.path).startswith(str(out)) for r in runs)
    # the cell on the killed node was retried and resumed from that node's snapshot
    retried = [r for r in records if (r.get("resumed_from") or {}).get("attempt") == killed["attempt"]]
    assert len(retried) == 1 and retried[0]["attempts"] >= 2
    assert retried[0]["node"]["node_id"] != killed["node_id"]
    assert retried[0]["resumed_from"]["steps"] >= killed["after"]
    ran_on = {r["node"]["node_id"] for r in records} | {killed["node_id"]}
    assert len(ran_on) == 2                                       # both nodes ran cells
    assert all(r["node"]["code"] != "" and "runtime_resources" in r["node"]["code"] for r in records), \
        [r["node"]["code"] for r in records]                      # the code came through the runtime_env

    # a re-run settles at once: the driver's results are what "finished" means
    from agents.harness.sweep import sweep

    lines: list[str] = []
    assert sweep(cfg, backend="ray", log=lines.append) == []
    assert lines[0].startswith(f"{CELLS} cells, {CELLS} already finished, 0 to run")

    # equal to plain runs of the same cells
    from agents.harness.runner import run

    for r in runs:
        plain = run("MNISTRotations-v0", agent="er", budget=20.0, seed=r.seed, stream_kwargs=cfg["stream"],
                    progress=False)
        assert r.data["accuracy_matrix"] == plain.accuracy_matrix, f"seed {r.seed}"
        assert load_result(r.path).data["config_hash"] == plain.config_hash


@pytest.mark.expensive
def test_a_cell_that_exhausts_its_retries_is_a_failed_result_and_the_sweep_goes_on(mnist_root, tmp_path,
                                                                                  ray_installed,
                                                                                  kill_after_checkpoint):
    import yaml

    cfg = {**_config(mnist_root, tmp_path / "out", tmp_path / "storage"), "seeds": [0, 1, 2], "retries": 1,
           "cpus_per_cell": 1,
           # seed 1's worker is SIGKILLed after its first checkpoint, in every attempt
           "runtime_env": {"env_vars": kill_after_checkpoint("1;seed1-", inherit=False)}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "agents.harness.cli", "sweep", str(tmp_path / "s.yaml"),
                           "--backend", "ray", "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]   # a failed cell: exit 1
    assert "at most 2 in flight" in proc.stdout
    assert "sweep summary: 3 cell(s) run: 2 finished, 0 diverged, 1 failed" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("|") and "seed=1" in line)
    assert "| failed |" in row and "(after 2 attempt(s))" in row
    runs, _ = find_results([tmp_path / "out"])
    assert sorted(r.seed for r in runs) == [0, 2]
    err = next((tmp_path / "out").rglob("seed1/error.txt")).read_text()
    assert "after 2 attempt(s)" in err
