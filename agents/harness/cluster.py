"""Sweep cells on a Ray cluster that shares no filesystem with the driver.

What travels where:

- **Results go to the driver.** A cell runs in a scratch directory on whichever node Ray picks
  (``CL_ENV_WORK_DIR`` on that node, else its temporary directory) and returns its whole result
  and small artefacts (``result.json``, ``config.json``, ``progress.*``, TensorBoard event files:
  at most :data:`RETURN_LIMIT` bytes) through Ray's object store. The driver writes them into the
  cell's directory atomically, ``result.json`` last, and alone decides what is finished.
- **Checkpoints go to storage.** After every checkpoint the cell copies its run directory to
  ``storage`` (a path or any URI `fsspec <https://filesystem-spec.readthedocs.io>`_ opens:
  ``s3://``, ``gs://``, ``file://``, an NFS mount; default ``OUT/.storage`` on the driver's
  disk, which only helps nodes that see that path) as an immutable snapshot
  ``STORAGE/<cell>/<attempt>/<steps>/`` whose ``snapshot.json`` is written last. A retried cell
  (its node died, Ray ran it again) resumes from the most advanced complete snapshot of any
  attempt; each attempt has its own name, so an orphaned attempt still writing cannot collide
  with its retry.
- **Code and environment travel with the job.** The job's ``runtime_env`` (``ray.init``) carries
  this checkout's ``cl_env``, ``memory`` and ``agents`` packages (``py_modules``) and the thread
  variables; with ``ship_requirements: true`` also the driver's pinned dependency versions
  (``pip``, installed by Ray on each node). Before running, a cell compares its node's Python,
  torch, NumPy, Gymnasium and quadprog versions and the digest of the code it imported with the
  driver's, and fails with the difference named instead of producing numbers another machine
  would not.
- **Failures are results.** A cell whose run raised, whose node's versions differ, or whose
  retries were exhausted (``ray.get`` raised) is recorded as failed with its error
  (``error.txt`` in its directory), and the sweep goes on.
- **Resources.** Each task requests ``cpus_per_cell`` CPUs (its torch threads) and
  ``gpus_per_cell`` GPUs (default 1 for ``device: cuda`` cells, since Ray hides GPUs from tasks
  that request none); ``--workers`` caps the cells in flight.
"""

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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from agents.harness import results

RETURN_LIMIT = 64 * 2**20  # bytes of a cell's artefacts returned through the object store
SNAPSHOT_MARKER = "snapshot.json"
STARTED_MARKER = "started.json"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CHECKED_DISTRIBUTIONS = ("torch", "numpy", "gymnasium", "quadprog")
WORK_DIR_ENV = "CL_ENV_WORK_DIR"


# --------------------------------------------------------------------------- the environment


def _packages() -> list:
    import agents
    import cl_env
    import memory

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
    from importlib import metadata

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


def pinned_requirements() -> list[str]:
    """The driver's installed versions of cl-env's dependencies, as ``name==version`` lines."""
    import re
    from importlib import metadata

    pins = []
    for req in metadata.requires("cl-env") or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def runtime_env(threads: int, extra: dict | None = None, ship_requirements: bool = False) -> dict:
    """The ``runtime_env`` every cell task carries: this checkout's packages, the thread
    variables, optionally the pinned requirements, merged with the config's ``runtime_env``."""
    env: dict = {"py_modules": [str(Path(p.__file__).parent) for p in _packages()],
                 "excludes": ["__pycache__", "*.pyc"],
                 "env_vars": {v: str(threads) for v in THREAD_VARS}}
    if ship_requirements:
        env["pip"] = pinned_requirements()
    for key, value in (extra or {}).items():
        if key == "env_vars":
            env["env_vars"] = {**env["env_vars"], **{k: str(v) for k, v in value.items()}}
        elif key == "py_modules":
            env["py_modules"] = env["py_modules"] + list(value)
        else:
            env[key] = value
    return env


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
              checkpoint_every: int | None = None) -> dict:
    """The body of one Ray task: run ``cell`` in a scratch directory, snapshot its checkpoints to
    ``storage``, and return its record with its artefacts (``files``) for the driver to write."""
    from agents.harness.sweep import Cell, execute

    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    node = node_info()
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
    work = Path(tempfile.mkdtemp(prefix="cl-env-cell-", dir=scratch))
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

        rec = execute(Cell(**cell), work, resume=snap is not None, started=started,
                      on_checkpoint=snapshot, checkpoint_every=checkpoint_every)
        final = None
        if (work / results.RESULT_FILE).exists():
            final = store.save(key, attempt, work, last["steps"], node, final=True)
        files, left_out = _artefacts(work)
        rec.update(base, files=files, left_out=left_out, attempt=attempt, attempts=attempts,
                   resumed_from=None if snap is None else {"attempt": snap["attempt"], "steps": snap["steps"],
                                                           "node": snap["node"]},
                   storage=final, work_dir=str(work))
        rec["node"] = node
        return rec
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- the driver


def deliver(rec: dict, cell_dir: Path) -> dict:
    """Write a cell's returned artefacts into ``cell_dir`` atomically (``result.json`` last, and
    ``error.txt`` for a failure); returns the record without the bytes."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    files = dict(rec.pop("files", None) or {})
    result = files.pop(results.RESULT_FILE, None)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            continue  # only plain file names come back; never a path
        results.write_bytes_atomic(cell_dir / name, data)
    if result is not None:
        results.write_bytes_atomic(cell_dir / results.RESULT_FILE, result)
    if rec["status"] == "failed":
        results.write_text_atomic(cell_dir / "error.txt", f"{rec.get('error')}\n")
    elif (cell_dir / "error.txt").exists():
        (cell_dir / "error.txt").unlink()
    rec["dir"] = str(cell_dir)
    return rec


def run_on_ray(todo: list, root: Path, cfg: dict, address: str | None, workers: int | None, retries: int,
               progress: Callable[[dict], dict], log=print) -> list[dict]:
    """Run ``todo`` (sweep cells) as Ray tasks; the driver writes every result (see the module doc)."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--backend ray needs Ray: pip install 'cl-env[ray]' (or pip install ray)") from exc
    try:
        import fsspec  # noqa: F401
    except ImportError as exc:
        raise ValueError("--backend ray needs fsspec for its storage: pip install 'cl-env[ray]'") from exc
    threads = int(cfg.get("cpus_per_cell") or 1)
    storage = str(cfg.get("storage") or (root.resolve() / ".storage"))
    Storage(storage)  # a malformed URI fails here, before any task
    env = runtime_env(threads, cfg.get("runtime_env"), bool(cfg.get("ship_requirements", False)))
    if ray.is_initialized():  # Ray takes local directories (py_modules) only when the job starts
        log("note: Ray was initialised before the sweep, so the job's runtime_env is the caller's; each "
            "task still carries the thread variables and every cell checks its code and versions")
        task_env = {k: v for k, v in env.items() if k not in ("py_modules", "excludes")}
    else:
        ray.init(address=address, runtime_env=env,
                 **({} if address else {"num_cpus": (workers or 0) * threads or None}),
                 include_dashboard=False, log_to_driver=False)
        task_env = None
    driver_env = environment()
    options = {"num_cpus": threads, "max_retries": retries, **({"runtime_env": task_env} if task_env else {})}
    in_flight = workers or len(todo)
    log(f"ray: {len(todo)} cell(s), {threads} CPU(s) per cell, at most {in_flight} in flight; "
        f"checkpoints -> {storage}; code {driver_env['code']} shipped as py_modules")
    task = ray.remote(cell_task)
    pending = list(todo)
    refs: dict = {}
    records = []
    while pending or refs:
        while pending and len(refs) < in_flight:
            c = pending.pop(0)
            gpus = cfg.get("gpus_per_cell")
            gpus = (1 if c.device.startswith("cuda") else 0) if gpus is None else gpus
            ref = task.options(**options, num_gpus=gpus).remote(
                asdict(c), c.directory(Path(".")).as_posix(), storage, threads, driver_env,
                cfg.get("checkpoint_every"))
            refs[ref] = c
        done, _ = ray.wait(list(refs), num_returns=1)
        cell = refs.pop(done[0])
        try:
            rec = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - retries exhausted (its worker or node died every time)
            rec = {"cell": asdict(cell), "status": "failed", "attempts": retries + 1,
                   "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                            f"(after {retries + 1} attempt(s))"}
        rec = deliver(rec, cell.directory(root))
        if rec["status"] != "failed" and not results.is_finished(cell.directory(root), cell.config_hash()):
            rec.update(status="failed", error="the worker returned no result of this configuration "
                                              "(its result.json is missing or has another config_hash)")
            results.write_text_atomic(cell.directory(root) / "error.txt", f"{rec['error']}\n")
        records.append(progress(rec))
    return records
