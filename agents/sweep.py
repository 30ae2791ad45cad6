"""``cl-env sweep``: a grid of runs (envs x agents x memories x budgets x settings x seeds) on local
processes or on a Ray cluster, all results in one directory; a stopped sweep started again skips
the finished cells and resumes the interrupted ones from their checkpoints.

A config (YAML or TOML)::

    out: runs/sweep                # every cell writes OUT/<env>/<agent>-<memory>-b<budget>[-<settings>]/seed<k>
    envs: [MNISTRotations-v0]
    agents: [er, gem]
    memories: [null, srm]          # null: the agent's default; pairs an agent cannot use are skipped
    budgets: [100, 200]            # null: the agent's default
    seeds: [0, 1, 2]
    settings: [{}, {lr: 0.03}]     # each a --set dict (memory.KEY allowed)
    stream: {}                     # --stream options for every env
    batch_size: null
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KEYS = {"out", "envs", "agents", "memories", "budgets", "seeds", "settings", "stream", "batch_size", "device"}


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    env: str
    agent: str
    memory: str | None
    budget: float | None
    seed: int
    settings: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    batch_size: int | None = None
    device: str = "cpu"

    def directory(self, root: Path) -> Path:
        name = f"{self.agent}-{self.memory or 'default'}-b{'default' if self.budget is None else f'{self.budget:g}'}"
        if self.settings:
            text = json.dumps(self.settings, sort_keys=True, default=str)
            name += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
        return root / self.env / name / f"seed{self.seed}"


def load_config(path: str | Path) -> dict:
    """Read a sweep config from YAML (``.yaml``/``.yml``) or TOML (``.toml``), checking its keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sweep config {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        cfg = yaml.safe_load(text) or {}
    elif path.suffix == ".toml":
        import tomllib

        cfg = tomllib.loads(text)
    else:
        raise ValueError(f"sweep config must be .yaml, .yml or .toml, got {path.name!r}")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the config must be a mapping of {sorted(KEYS)}")
    unknown = set(cfg) - KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; valid keys: {sorted(KEYS)}")
    for key in ("envs", "agents"):
        if not cfg.get(key):
            raise ValueError(f"{path}: {key!r} must list at least one value")
    return cfg


def expand(cfg: dict) -> tuple[list[Cell], list[str]]:
    """The grid's cells, and a note for every combination skipped (an agent that cannot use a memory)."""
    from agents.registry import AGENTS, agent_class
    from cl_env.error import UnknownNameError

    def listed(key: str, default: list) -> list:
        v = cfg.get(key, default)
        return v if isinstance(v, list) else [v]

    cells, skipped = [], []
    for env, agent, memory, budget, settings, seed in itertools.product(
            listed("envs", []), listed("agents", []), listed("memories", [None]), listed("budgets", [None]),
            listed("settings", [{}]), listed("seeds", [0])):
        if agent not in AGENTS:
            raise UnknownNameError("agent", agent, AGENTS)
        entry = AGENTS[agent]
        if memory is not None and memory not in entry.memories:
            skipped.append(f"{agent} + {memory}: the agent accepts {list(entry.memories) or 'no memory'}")
            continue
        if not entry.memories:
            budget = None  # a memoryless agent runs once per remaining combination
        agent_class(agent).resolve_settings({k: v for k, v in (settings or {}).items() if not k.startswith("memory.")})
        cells.append(Cell(env, agent, memory, None if budget is None else float(budget), int(seed),
                          dict(settings or {}), dict(cfg.get("stream") or {}), cfg.get("batch_size"),
                          cfg.get("device", "cpu")))
    unique = {json.dumps(asdict(c), sort_keys=True, default=str): c for c in cells}
    return list(unique.values()), sorted(set(skipped))


def run_cell(cell: dict, root: str, threads: int) -> dict:
    """Run one cell (in a worker process or a Ray task): resume it if a checkpoint exists."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    from agents.runner import run

    c = Cell(**cell)
    out = c.directory(Path(root))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch.manual_seed(c.seed)
    try:
        r = run(c.env, agent=c.agent, memory=c.memory, budget=c.budget, seed=c.seed, settings=c.settings,
                stream_kwargs=c.stream, batch_size=c.batch_size, device=c.device, out=out,
                resume=(out / "checkpoint.pt").exists(), progress=False)
    except Exception as exc:  # a failed cell is reported, the sweep goes on
        (out / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        return {"cell": cell, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    score = r.retained_accuracy if r.retained_accuracy is not None else (r.neg_test_elbo or [None])[-1]
    return {"cell": cell, "ok": True, "score": score, "seconds": time.perf_counter() - started, "dir": str(out)}


def sweep(cfg: dict, workers: int | None = None, backend: str = "local", address: str | None = None,
          log=print) -> list[dict]:
    """Run every unfinished cell of ``cfg``; returns one record per cell run now."""
    root = Path(cfg.get("out", "runs/sweep"))
    cells, skipped = expand(cfg)
    for note in skipped:
        log(f"skipped: {note}")
    todo = [c for c in cells if not (c.directory(root) / "result.json").exists()]
    log(f"{len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run -> {root}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text(json.dumps({"config": cfg, "cells": [asdict(c) for c in cells]},
                                                indent=2, default=str))
    if not todo:
        return []
    cores = os.cpu_count() or 1
    if backend == "local":
        workers = max(1, min(workers or cores, len(todo), cores))
        threads = max(1, cores // workers)  # never oversubscribe: OpenMP threads spin against each other
        return _local(todo, root, workers, threads, log)
    if backend == "ray":
        return _ray(todo, root, address, workers, log)
    raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")


def _local(todo: list[Cell], root: Path, workers: int, threads: int, log) -> list[dict]:
    records = []
    if workers == 1:
        for c in todo:
            records.append(_report(run_cell(asdict(c), str(root), threads), log))
        return records
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, asdict(c), str(root), threads) for c in todo]
        for f in as_completed(futures):
            records.append(_report(f.result(), log))
    return records


def _ray(todo: list[Cell], root: Path, address: str | None, workers: int | None, log) -> list[dict]:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--backend ray needs Ray: pip install 'cl-env[ray]' (or pip install ray)") from exc
    if not ray.is_initialized():
        ray.init(address=address, **({} if address else {"num_cpus": workers or os.cpu_count()}),
                 include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_cell)
    refs = [remote.remote(asdict(c), str(root.resolve()), 1) for c in todo]
    records = []
    while refs:
        done, refs = ray.wait(refs, num_returns=1)
        records.append(_report(ray.get(done[0]), log))
    return records


def _report(rec: dict[str, Any], log) -> dict:
    c = rec["cell"]
    what = f"{c['env']} {c['agent']} memory={c['memory']} budget={c['budget']} seed={c['seed']} {c['settings'] or ''}"
    if rec["ok"]:
        log(f"done: {what}: {rec['score']:.4f} ({rec['seconds']:.1f} s)")
    else:
        log(f"FAILED: {what}: {rec['error']}")
    return rec
