"""Running a sweep: :func:`sweep`, on local worker processes (threads shared out, a dead
worker's cells retried from their checkpoints) or on Ray (:mod:`agents.harness.sweep.ray`)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import torch

from agents.harness import results
from agents.harness.runner import Result
from agents.harness.sweep.cells import Cell, execute_seeds, record_of
from agents.harness.sweep.config import check_config, run_options_of
from agents.harness.sweep.grid import expand
from agents.harness.sweep.progress import _Progress, summary_table
from agents.harness.sweep.ray.driver import run_on_ray
from agents.stacked import may_stack
from cl_env import checks


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan_threads(workers: int | None, n_cells: int, log=print, cpus_per_cell: int | None = None) -> tuple[int, int]:
    """Worker processes and torch threads per worker.

    ``cpus_per_cell`` (the config key), else ``OMP_NUM_THREADS`` when set, is the threads per cell
    (and sizes the default worker count); otherwise the cores are shared out. By default workers x threads never exceed the cores of the
    process's affinity; an explicit ``workers`` that oversubscribes them is honoured with a warning.
    """
    cores = available_cores()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    omp_threads = int(omp) if omp.isdigit() and int(omp) > 0 else None
    if cpus_per_cell:
        omp_threads = int(cpus_per_cell)
    if workers is None:
        threads = omp_threads or 1
        workers = max(1, min(n_cells, cores // threads))
        if omp_threads is None:
            threads = max(1, cores // workers)
    else:
        workers = max(1, min(workers, max(n_cells, 1)))
        threads = omp_threads or max(1, cores // workers)
    if workers * threads > cores:
        log(f"warning: {workers} workers x {threads} threads oversubscribe the {cores} cores this process may "
            f"use; OpenMP threads spinning against each other can slow every cell tenfold "
            f"(fewer --workers, or OMP_NUM_THREADS={max(1, cores // workers)})")
    return workers, threads


def seed_groups(cells: list[Cell]) -> list[list[Cell]]:
    """``cells`` as units of work: the seeds of one configuration together where they can be
    stacked (:func:`agents.stacked.may_stack`), every other cell alone; first-seen order."""
    groups: dict[str, list[Cell]] = {}
    units: list[list[Cell]] = []
    for c in cells:
        try:
            stackable = may_stack(c.env, c.agent, c.memory, c.settings)
        except Exception:  # noqa: BLE001 - an unknown name fails in its own cell, with its message
            stackable = False
        if not stackable:
            units.append([c])
            continue
        key = results.group_hash(c.config())
        if key not in groups:
            groups[key] = []
            units.append(groups[key])
        groups[key].append(c)
    return units


def share_out(units: list[list[Cell]], slots: int) -> list[list[Cell]]:
    """``units`` with groups of stacked seeds split into parts while fewer units than ``slots`` (the
    worker processes that can run at once) would leave cores idle: a group's lanes run one at a
    time on one core (the GIL), so 5 seeds on 2 cores train as 3 and 2, one process and one
    thread each. Each spare slot goes to the group whose parts are largest, as long as every
    part keeps 2 or more seeds (so it still stacks); parts are as even as can be, in seed order.
    Groups on a GPU are left whole (one process, one CUDA context)."""
    parts = [1] * len(units)
    free = slots - len(units)
    splittable = [i for i, u in enumerate(units) if all(c.device == "cpu" for c in u)]
    while free > 0 and splittable:
        i = max(splittable, key=lambda j: len(units[j]) / parts[j])
        if len(units[i]) < 2 * (parts[i] + 1):
            splittable.remove(i)
            continue
        parts[i] += 1
        free -= 1
    out: list[list[Cell]] = []
    for u, p in zip(units, parts, strict=True):
        q, r = divmod(len(u), p)
        start = 0
        for k in range(p):
            n = q + (k < r)
            out.append(list(u[start:start + n]))
            start += n
    return out


def run_cell(cell: dict, root: str, threads: int, run_options: dict | None = None) -> dict:
    """Run one cell in a local worker process, in its directory under ``root``: resume it if a
    checkpoint exists."""
    return run_unit([cell], root, threads, run_options)[0]


def run_unit(cells: list[dict], root: str, threads: int, run_options: dict | None = None) -> list[dict]:
    """Run a unit of work in a local worker process: one cell, or one configuration's seeds
    together (:func:`agents.harness.sweep.cells.execute_seeds`); each in its directory under ``root``,
    resumed where a checkpoint exists (seeds with and without one run as two groups).
    ``run_options``: :func:`agents.harness.runner.run_seeds`'s options from the sweep's keys
    (:func:`agents.harness.sweep.config.run_options_of`: ``checkpoint_every``, ``log``)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    cs = [Cell(**c) for c in cells]
    outs = [c.directory(Path(root)) for c in cs]
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
    resume = [(out / results.CHECKPOINT_FILE).exists() for out in outs]
    recs: dict[int, dict] = {}
    for flag in (True, False):
        idx = [i for i, r in enumerate(resume) if r == flag]
        if idx:
            recs.update(zip(idx, execute_seeds([cs[i] for i in idx], [outs[i] for i in idx], resume=flag,
                                               **(run_options or {})), strict=True))
    out_recs = []
    for i, out in enumerate(outs):
        rec = recs[i]
        if rec["status"] == "failed":
            results.write_text_atomic(out / "error.txt", f"{rec['error']}\n")
        out_recs.append({**rec, "dir": str(out)})
    return out_recs


def _cell_process(cells: list[dict], root: str, threads: int, run_options: dict | None, conn) -> None:
    """A worker process's body: run the unit, send its records (small) through ``conn``."""
    try:
        recs = run_unit(cells, root, threads, run_options)
    except BaseException as exc:  # noqa: BLE001 - reported as the cells' failure
        recs = [{"cell": cell, "status": "failed", "error": f"{type(exc).__name__}: {exc}"} for cell in cells]
    conn.send(recs)
    conn.close()


def sweep(cfg: dict, workers: int | None = None, backend: str = "local", address: str | None = None,
          log=print, isolate: bool = True, cells: list[Cell] | None = None, bar: bool = False) -> list[dict]:
    """Run every unfinished cell of ``cfg``; returns one record per cell run now.

    ``isolate=False`` (what ``cl-env run --seeds`` passes) runs a sweep that is one unit of work
    (one cell, or one group of stacked seeds) in this process instead of a worker process: no
    second interpreter start, no retry (a killed run resumes from its checkpoints when started
    again, as ``cl-env run`` does); when :func:`share_out` splits that group over idle cores, its
    first part runs in this process and the others in workers beside it (:func:`_alongside`).
    ``workers=0`` runs every unit in this process, one after another (local backend; as a
    DataLoader's ``num_workers=0``).

    ``cells`` (what ``cl-env frontier`` passes): these cells instead of the grid of ``cfg``
    (whose other keys still apply: ``out``, retries, threads, Ray's options). ``bar``: a progress
    bar (tqdm) instead of one line per finished cell.

    Records: ``cell``, ``status`` (completed / diverged / failed), ``score``, ``seconds``,
    ``attempts``, ``dir`` and, for failures, ``error``.
    """
    check_config(cfg)
    if workers is not None:
        checks.integer("workers", workers, 0 if backend == "local" else 1, fix="--workers 2")
    root = Path(cfg.get("out", "runs/sweep"))
    retries = int(cfg.get("retries", 2))
    cells, skipped = expand(cfg) if cells is None else (cells, [])
    for note in skipped:
        log(f"skipped: {note}")
    todo = [c for c in cells if not results.is_finished(c.directory(root), c.config_hash())]
    log(f"{len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run -> {root}")
    root.mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(root / "sweep.json", {
        "config": cfg, "cells": [{**asdict(c), "config_hash": c.config_hash(),
                                  "dir": str(c.directory(root).relative_to(root))} for c in cells]})
    if not todo:
        return []
    progress = _Progress(len(todo), log, bar)
    opts = run_options_of(cfg)
    if backend == "local":
        units = seed_groups(todo) if cfg.get("stack_seeds", True) else [[c] for c in todo]
        whole = len(units)
        if workers != 0:  # idle cores take part of a group of stacked seeds
            units = share_out(units, plan_threads(workers, 1 << 30, lambda *_: None, cfg.get("cpus_per_cell"))[0])
        in_process = workers == 0 or (not isolate and len(units) == 1)
        workers, threads = plan_threads(workers or (1 if in_process else None), len(units), log,
                                        cfg.get("cpus_per_cell"))
        if cfg.get("gpus_per_cell"):
            log("note: gpus_per_cell is a Ray request; local workers use the device of the cell's config")
        progress.workers = workers
        grouped = sum(len(u) for u in units if len(u) > 1)
        if grouped:
            log(f"{grouped} cell(s) in {sum(len(u) > 1 for u in units)} group(s) of seeds trained together "
                f"(stacked; stack_seeds: false runs them apart)")
        # a group shared out over the cores (isolate=False: cl-env run --seeds), every part started at once
        alongside = not in_process and not isolate and whole == 1 < len(units) <= workers
        if in_process:
            log(f"in this process, {threads} torch thread(s)")
        elif alongside:
            log(f"this process and {workers - 1} worker process(es), {threads} torch thread(s) each; a dead "
                f"worker's cell is retried {retries} time(s)")
        else:
            log(f"{workers} worker process(es) x {threads} torch thread(s); a dead worker's cell is retried "
                f"{retries} time(s)")
        if in_process:
            with _caller_threads():
                records = [progress({**rec, "attempts": 1}) for unit in units for rec in
                           run_unit([asdict(c) for c in unit], str(root), threads, opts)]
        elif alongside:  # e.g. a group shared out over the cores: this process takes its first part
            with _caller_threads():
                records = _alongside(units, root, workers, threads, retries, progress, opts)
        else:
            records = _local(units, root, workers, threads, retries, progress, opts)
    elif backend == "ray":
        records = run_on_ray(todo, root, cfg, address, workers, retries, progress, log)
    else:
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    progress.close()
    log(summary_table(records))
    return records


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a result"


@contextmanager
def _caller_threads():
    """Restore this process's torch threads and ``OMP_NUM_THREADS`` after :func:`run_unit` set
    them for the cells it ran here."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


def _alongside(units: list[list[Cell]], root: Path, workers: int, threads: int, retries: int, progress,
               run_options: dict | None = None) -> list[dict]:
    """The first unit in this process while worker processes run the others (:func:`_local`, from
    a thread that only waits on them): no interpreter start for the first part, whose run overlaps
    the workers' start-up. Used by ``isolate=False`` (``cl-env run --seeds``) once
    :func:`share_out` has split its one group of seeds. An exception or Ctrl-C here (while this
    part runs or while it waits) terminates the workers before it is raised."""
    rest: dict[str, Any] = {}
    stop = threading.Event()  # set when this process's part fails or is interrupted: end the workers
    done = threading.Event()  # waited on instead of Thread.join, which a Ctrl-C leaves unusable

    def others() -> None:
        try:
            rest["records"] = _local(units[1:], root, max(1, workers - 1), threads, retries, progress,
                                     run_options, stop)
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            rest["error"] = exc
        finally:
            done.set()

    threading.Thread(target=others, name="sweep-workers", daemon=True).start()
    try:
        first = [progress({**rec, "attempts": 1}) for rec in
                 run_unit([asdict(c) for c in units[0]], str(root), threads, run_options)]
        done.wait()
    except BaseException:  # this part failed, or Ctrl-C came (also while waiting for the workers)
        stop.set()
        done.wait()
        raise
    if "error" in rest:
        raise rest["error"]
    return first + rest["records"]


def _local(units: list[list[Cell]], root: Path, workers: int, threads: int, retries: int, progress,
           run_options: dict | None = None, stop: threading.Event | None = None) -> list[dict]:
    """Each unit (a cell, or one configuration's seeds trained together) in a process of its own
    (spawned), at most ``workers`` at once; a process that dies without reporting is retried up to
    ``retries`` times with its unfinished cells (they resume from their checkpoints). Once ``stop``
    is set the running processes are terminated and nothing more is started."""
    ctx = mp.get_context("spawn")
    pending = deque((unit, 1) for unit in units)
    running: dict[Any, tuple] = {}
    records = []
    while pending or running:
        if stop is not None and stop.is_set():
            for proc, *_ in running.values():
                proc.terminate()
            for proc, recv, *_ in running.values():
                proc.join()
                recv.close()
            break
        while pending and len(running) < workers:
            unit, attempt = pending.popleft()
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_cell_process,
                               args=([asdict(c) for c in unit], str(root), threads, run_options, send))
            proc.start()
            send.close()
            running[proc.sentinel] = (proc, recv, unit, attempt, time.perf_counter())
        for sentinel in wait(list(running), timeout=None if stop is None else 0.2):
            proc, recv, unit, attempt, t0 = running.pop(sentinel)
            recs = None
            try:
                if recv.poll():
                    recs = recv.recv()
            except (EOFError, OSError):
                recs = None
            recv.close()
            proc.join()
            if recs is None:
                reason = _exit_reason(proc.exitcode)
                left = [c for c in unit if not results.is_finished(c.directory(root), c.config_hash())]
                for c in unit:  # seeds that finished before their group's process died
                    if c not in left:
                        r = Result.from_json(c.directory(root) / results.RESULT_FILE)
                        records.append(progress({**record_of(c, r, t0), "attempts": attempt,
                                                 "dir": str(c.directory(root))}))
                if left and attempt <= retries:
                    what = left[0].describe() + (f" and {len(left) - 1} other seed(s)" if len(left) > 1 else "")
                    progress.log(f"retrying {what} (attempt {attempt + 1} of {retries + 1}): {reason}")
                    pending.append((left, attempt + 1))
                    continue
                recs = [{"cell": asdict(c), "status": "failed", "seconds": time.perf_counter() - t0,
                         "error": f"{reason}, {attempt} attempt(s)", "dir": str(c.directory(root))} for c in left]
            for rec in recs:
                rec["attempts"] = attempt
                records.append(progress(rec))
    return records
