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

import re
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from agents.harness import results
from agents.harness.sweep.config import run_options_of
from agents.harness.sweep.ray import entry as _ray_entry
from agents.harness.sweep.ray.task import (
    RETURN_LIMIT,
    THREAD_VARS,
    Storage,
    _packages,
    environment,
)

__all__ = ["RETURN_LIMIT", "Storage", "deliver", "environment", "pinned_requirements", "run_on_ray", "runtime_env"]


# --------------------------------------------------------------------------- the job's environment


def pinned_requirements() -> list[str]:
    """The driver's installed versions of cl-env's dependencies, as ``name==version`` lines."""
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
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(_ray_entry)  # unpickling the task imports no cl-env code
    task = ray.remote(_ray_entry.run)
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
                run_options_of(cfg))
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
