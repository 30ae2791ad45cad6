"""The worker side of a Ray sweep (see :mod:`agents.harness.sweep.ray.driver`): the node's environment
and its check against the driver's, checkpoint storage (fsspec), and the task that runs a cell."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path

import torch

import agents
import cl_env
import memory
from agents.harness import results
from agents.harness.sweep.cells import Cell, execute

RETURN_LIMIT = 64 * 2**20  # bytes of a cell's artefacts returned through the object store
SNAPSHOT_MARKER = "snapshot.json"
STARTED_MARKER = "started.json"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CHECKED_DISTRIBUTIONS = ("torch", "numpy", "gymnasium", "quadprog")
WORK_DIR_ENV = "CL_ENV_WORK_DIR"


# --------------------------------------------------------------------------- the environment


def _packages() -> list:
    return [cl_env, memory, agents]


def code_digest() -> str:
    """SHA-256 (first 16 hex digits) of the source of ``cl_env``, ``memory`` and ``agents`` as
    imported by this process: equal on the driver and a worker exactly when they run the same code."""
    h = hashlib.sha256()
    for pkg in _packages():
        root = Path(pkg.__file__).parent
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root.parent).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def environment() -> dict:
    """What a result depends on beyond its configuration: Python (major.minor), the versions of
    :data:`CHECKED_DISTRIBUTIONS` and :func:`code_digest`."""
    env = {"python": ".".join(platform.python_version_tuple()[:2]), "code": code_digest()}
    for dist in CHECKED_DISTRIBUTIONS:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    return env


def environment_mismatch(driver: dict, worker: dict) -> str | None:
    """One line naming what differs between the driver's and a worker's :func:`environment`, and
    how to fix it; None when they agree."""
    diffs = [k for k in driver if worker.get(k) != driver.get(k)]
    if not diffs:
        return None
    named = ", ".join(f"{k} {worker.get(k)} (the driver has {driver.get(k)})" for k in diffs)
    fixes = []
    if any(k != "code" for k in diffs):
        pins = " ".join(f"{k}=={driver[k]}" for k in diffs if k not in ("code", "python") and driver[k])
        fixes.append(f"install the driver's versions on every node ({'pip install ' + pins if pins else 'the same Python'})"
                     " or set `ship_requirements: true` in the sweep config")
    if "code" in diffs:
        fixes.append("the shipped cl_env/memory/agents modules did not reach this worker: check the job's "
                     "runtime_env (py_modules)")
    return f"this node runs {named}: results would not be comparable; " + "; ".join(fixes)


# --------------------------------------------------------------------------- storage


class Storage:
    """Snapshots of cells' run directories under a path or URI every node can reach (fsspec).

    Layout: ``ROOT/<cell>/<attempt>/started.json`` (written when the attempt starts) and
    ``ROOT/<cell>/<attempt>/<steps>/`` (the run directory after the checkpoint at that step,
    with ``snapshot.json`` written last: a snapshot without it is incomplete and ignored). An
    attempt keeps only its newest snapshot.
    """

    def __init__(self, url: str):
        import fsspec

        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _write_atomic(self, path: str, data: bytes) -> None:
        tmp = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    def start_attempt(self, key: str, attempt: str, node: dict) -> int:
        """Record an attempt's start; returns how many attempts this cell has had, this one included."""
        self.fs.makedirs(self.path(key, attempt), exist_ok=True)
        self._write_atomic(self.path(key, attempt, STARTED_MARKER),
                           json.dumps({"attempt": attempt, "node": node, "time": time.time()}).encode())
        return len(self.fs.glob(self.path(key, "*", STARTED_MARKER)))

    def save(self, key: str, attempt: str, run_dir: Path, steps: int, node: dict, final: bool = False) -> str:
        """Copy the files of ``run_dir`` to a new snapshot of this attempt; drop its older ones."""
        name = f"{steps:010d}" + ("-final" if final else "")
        snap = self.path(key, attempt, name)
        files = [f for f in sorted(run_dir.iterdir()) if f.is_file() and not f.name.startswith(".")]
        self.fs.makedirs(snap, exist_ok=True)
        for f in files:
            self.fs.put_file(str(f), f"{snap}/{f.name}")
        marker = {"steps": int(steps), "final": final, "attempt": attempt, "node": node,
                  "files": [f.name for f in files], "time": time.time()}
        self._write_atomic(f"{snap}/{SNAPSHOT_MARKER}", json.dumps(marker).encode())
        for old in self.fs.ls(self.path(key, attempt), detail=False):
            base = old.rstrip("/").rsplit("/", 1)[-1]
            if base not in (name, STARTED_MARKER) and not base.startswith("."):
                self.fs.rm(old, recursive=True)
        return snap

    def snapshots(self, key: str) -> list[dict]:
        """Complete snapshots of every attempt of ``key``, least advanced first."""
        found = []
        for marker in self.fs.glob(self.path(key, "*", "*", SNAPSHOT_MARKER)):
            try:
                d = json.loads(self.fs.cat_file(marker))
            except (OSError, ValueError):
                continue
            found.append({**d, "path": marker.rsplit("/", 1)[0]})
        return sorted(found, key=lambda d: (d["steps"], d["final"], d["time"]))

    def restore(self, key: str, run_dir: Path) -> dict | None:
        """Download the most advanced complete snapshot of ``key`` into ``run_dir`` (empty); a
        snapshot removed while it is read (its attempt moved on) is skipped for the next best."""
        for snap in reversed(self.snapshots(key)):
            try:
                for name in snap["files"]:
                    self.fs.get_file(f"{snap['path']}/{name}", str(run_dir / name))
                return snap
            except (FileNotFoundError, OSError):
                for f in run_dir.iterdir():
                    f.unlink()
        return None


# --------------------------------------------------------------------------- the task


def node_info() -> dict:
    """Where this process runs: host, Ray node id (when inside Ray), pid, and the code's path."""
    info = {"host": socket.gethostname(), "pid": os.getpid(), "code": str(Path(_packages()[2].__file__).parent)}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return info


def _artefacts(run_dir: Path, limit: int = RETURN_LIMIT) -> tuple[dict[str, bytes], list[str]]:
    """The run directory's files but the checkpoint, as bytes, within ``limit`` (small first)."""
    files = sorted((f for f in run_dir.iterdir() if f.is_file() and not f.name.startswith(".")
                    and f.name != results.CHECKPOINT_FILE), key=lambda f: f.stat().st_size)
    out, left, total = {}, [], 0
    for f in files:
        size = f.stat().st_size
        if total + size > limit and f.name != results.RESULT_FILE:
            left.append(f.name)
            continue
        out[f.name] = f.read_bytes()
        total += size
    return out, left


def cell_task(cell: dict, key: str, storage: str, threads: int, driver_env: dict,
              run_options: dict | None = None) -> dict:
    """The body of one Ray task: run ``cell`` in a scratch directory, snapshot its checkpoints to
    ``storage``, and return its record with its artefacts (``files``) for the driver to write."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    node = {**node_info(), "threads": torch.get_num_threads()}
    started = time.perf_counter()
    base = {"cell": cell, "node": node, "files": {}}
    mismatch = environment_mismatch(driver_env, environment())
    if mismatch is not None:
        return {**base, "status": "failed", "error": f"EnvironmentMismatch on {node['host']}: {mismatch}",
                "seconds": 0.0}
    attempt = f"attempt-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    store = Storage(storage)
    scratch = os.environ.get(WORK_DIR_ENV) or None
    if scratch:
        Path(scratch).mkdir(parents=True, exist_ok=True)
    c = Cell(**cell)
    work = Path(tempfile.mkdtemp(prefix=f"cl-env-{c.env}-{c.agent}-seed{c.seed}-", dir=scratch))
    try:
        try:
            attempts = store.start_attempt(key, attempt, node)
            snap = store.restore(key, work)
        except Exception as exc:  # noqa: BLE001 - storage unreachable from this node
            return {**base, "status": "failed", "seconds": time.perf_counter() - started,
                    "error": f"storage {storage!r} is not usable on {node['host']} ({type(exc).__name__}: {exc}); "
                             f"set `storage:` to a path or URI every node can reach"}

        last = {"steps": 0 if snap is None else snap["steps"]}

        def snapshot(run_dir: Path, steps: int) -> None:
            store.save(key, attempt, run_dir, steps, node)
            last["steps"] = steps

        rec = execute(c, work, resume=snap is not None, started=started,
                      on_checkpoint=snapshot, **(run_options or {}))
        final = None
        if (work / results.RESULT_FILE).exists():
            final = store.save(key, attempt, work, last["steps"], node, final=True)
        files, left_out = _artefacts(work)
        rec.update(base, files=files, left_out=left_out, attempt=attempt, attempts=attempts,
                   resumed_from=None if snap is None else {"attempt": snap["attempt"], "steps": snap["steps"],
                                                           "node": snap["node"]},
                   storage=final, work_dir=str(work))
        return rec
    finally:
        shutil.rmtree(work, ignore_errors=True)
