"""``cl-env sweep``: a grid of runs (envs x agents x memories x budgets x settings x seeds) on local
processes or on a Ray cluster, all results in one directory.

A cell is identified by its run's configuration hash (:func:`agents.harness.results.run_config`, every
default resolved): its directory is ``OUT/<env>/<agent>-<memory>-b<budget>-<hash of the
configuration without the seed>/seed<k>``. A cell is finished only when its ``result.json``
parses and carries that same hash, so changing any key (a stream option, the batch size, the
device, a setting) reruns exactly the cells it changes, and two spellings of one configuration
(``memories: [null, reservoir]`` for ER) run once. A stopped sweep started again resumes the
interrupted cells from their checkpoints.

Each local cell runs in a process of its own: a worker that dies (killed, out of memory) costs
only its cell, which is retried from its checkpoint (``retries`` times, default 2) while the
others go on. Threads: ``OMP_NUM_THREADS`` is honoured, the cores are those of the process's CPU
affinity, and by default workers x threads never exceed them. The sweep ends with a table of
finished / diverged / failed cells.

A config (YAML or TOML)::

    out: runs/sweep
    envs: [MNISTRotations-v0]
    agents: [er, gem]
    memories: [null, srm]          # null: the agent's default; pairs an agent cannot use are skipped
    budgets: [100, 200]            # null: the agent's default
    items: [null]                  # or exact item counts of a buffer memory, e.g. [200, 500]
                                   # (instead of budgets: give one or the other)
    seeds: [0, 1, 2]
    settings: [{}, {lr: 0.03}]     # each a --set dict (memory.KEY allowed)
    preset: null                   # or preset names (cl-env list presets), an axis: a preset
                                   # runs with its own agent and env only (other pairs skipped);
                                   # without agents:, each preset's agent
    stream: {}                     # --stream options for every env
    streams: [{}]                  # a grid axis of --stream dicts, each merged over `stream`
                                   # (e.g. [{source: mnist5k}, {source: fashion_mnist}])
    batch_size: null
    device: cpu
    retries: 2                     # attempts after a worker died, per cell
    checkpoint_every: null         # also checkpoint every this many steps (task ends always do)
    cpus_per_cell: 1               # torch threads per cell (Ray: the CPUs each task requests)
    gpus_per_cell: null            # Ray: GPUs per task (default 1 for device: cuda, else 0)
    storage: null                  # Ray: checkpoints' path or fsspec URI (default OUT/.storage)
    runtime_env: {}                # Ray: merged into each task's runtime_env
    ship_requirements: false       # Ray: also ship the driver's pinned dependency versions (pip)
    stack_seeds: true              # local: a configuration's seeds train together in one process
                                   # where the agent allows (agents.stacked; same numbers)

On Ray (``--backend ray [--address HOST:PORT]``) the driver owns the results and no
filesystem is assumed shared: see :mod:`agents.harness.cluster`.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import signal
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents.harness import limits, results
from agents.harness.cells import Cell, execute_seeds, record_of
from agents.harness.cluster import run_on_ray
from agents.harness.runner import Result
from agents.presets import preset_agents, preset_mismatch
from agents.registry import agent_entry
from agents.stacked import may_stack
from cl_env import checks
from cl_env.checks import shown
from cl_env.error import UnknownNameError
from memory import is_memory_name, memory_names

KEYS = {"out", "envs", "agents", "memories", "budgets", "items", "preset", "seeds", "settings", "stream", "streams", "batch_size",
        "device", "retries", "checkpoint_every", "cpus_per_cell", "gpus_per_cell", "storage", "runtime_env",
        "ship_requirements", "stack_seeds"}


# the size of a sweep document, checked before it is used (a "billion laughs" file of nested
# aliases expands to more nodes than memory holds)
MAX_BYTES = 1_000_000
MAX_NODES = 100_000  # scalars, lists and mappings, every alias counted as the nodes it expands to
MAX_DEPTH = 20
MAX_ALIASES = 100


def _too_big(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: the sweep document is too large ({what}; at most {MAX_NODES:,} nodes, "
                      f"{MAX_DEPTH} levels, {MAX_ALIASES} aliases, {MAX_BYTES:,} bytes): write the grid "
                      "out as plain lists")


def check_yaml_size(text: str, where: str) -> None:
    """Count a YAML document's nodes (aliases expanded), depth and aliases from its parser events,
    before anything is built from them; raise ValueError past the limits."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    stack: list[list] = [[None, 0]]  # [anchor, nodes so far] per open collection
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _too_big(where, f"more than {MAX_ALIASES} aliases")
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 0])
            if len(stack) - 1 > MAX_DEPTH:
                raise _too_big(where, f"nested more than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, n = stack.pop()
            n += 1
            if anchor is not None:
                sizes[anchor] = n
            stack[-1][1] += n
        else:
            continue
        if stack[0][1] + sum(n for _, n in stack[1:]) > MAX_NODES:
            raise _too_big(where, f"more than {MAX_NODES:,} nodes once its aliases are expanded")


def _check_tree_size(obj, where: str) -> None:
    """The same limits on a parsed TOML document (no aliases there)."""
    nodes, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        nodes += 1
        if d > MAX_DEPTH:
            raise _too_big(where, f"nested more than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise _too_big(where, f"more than {MAX_NODES:,} nodes")
        if isinstance(o, (dict, list)):
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))


def load_config(path: str | Path) -> dict:
    """Read a sweep config from YAML (``.yaml``/``.yml``) or TOML (``.toml``), checking its size
    (bytes, nodes with aliases expanded, depth, aliases) before it is built, then its keys."""
    path = Path(path)
    cfg = read_config_file(path, "sweep config")
    unknown = set(cfg) - KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {shown(sorted(map(str, unknown)), 200)}; valid keys: {sorted(KEYS)}")
    for key in ("envs", "agents"):
        if not cfg.get(key):
            raise ValueError(f"{path}: {key!r} must list at least one value")
    check_config(cfg, str(path))
    return cfg


def read_config_file(path: str | Path, what: str = "config") -> dict:
    """The mapping in a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file; one clear error for a
    missing file, a syntax error or a file that is not a mapping (keys are the caller's to check)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{what} does not exist", str(path))
    with open(path, "rb") as f:  # a directory raises IsADirectoryError: one line in the CLI
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise _too_big(str(path), f"more than {MAX_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            check_yaml_size(text, str(path))
            cfg = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{path}: not valid YAML{where} ({problem}); fix the syntax "
                             f"(lists as [a, b], mappings as {{key: value}})") from None
    elif path.suffix == ".toml":
        import tomllib

        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
        _check_tree_size(cfg, str(path))
    else:
        raise ValueError(f"{what} must be .yaml, .yml or .toml, got {path.name!r}")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the {what} must be a mapping of keys to values")
    return cfg


def _as_list(value):
    return value if isinstance(value, list) else [value]


def check_config(cfg: dict, where: str = "sweep config") -> None:
    """Types of every key, before any cell runs (one clear error naming the key and the value)."""
    def each(key, ok, expected, example):
        for v in _as_list(cfg.get(key, [])):
            if not ok(v):
                raise checks.fail(f"{where}: {key}", v, expected, f"{key}: {example}")

    each("envs", lambda v: isinstance(v, str), "env ids (strings)", "[MNISTRotations-v0]")
    each("agents", lambda v: isinstance(v, str), "agent names (strings)", "[er, gem]")
    each("memories", lambda v: v is None or isinstance(v, str), "memory names or null", "[null, srm]")
    budget = limits.TABLE[""]["budget"]
    each("budgets", lambda v: v is None or budget.holds(v), f"null or numbers: {budget.text()}", "[100, 200]")
    each("items", lambda v: v is None or (checks.is_int(v) and v >= 1), "positive integers or null", "[200, 500]")
    if any(v is not None for v in _as_list(cfg.get("items", []))) and any(
            v is not None for v in _as_list(cfg.get("budgets", []))):
        raise checks.fail(f"{where}: items", cfg["items"], "items or budgets, not both (each sizes the memory)",
                          "budgets: [null] with items: [200, 500]")
    each("preset", lambda v: v is None or isinstance(v, str), "preset names or null", "[derpp-seqmnist-500]")
    each("seeds", lambda v: checks.is_int(v) and 0 <= v < 2**32, "non-negative integers", "[0, 1, 2]")
    each("settings", lambda v: isinstance(v, dict), "mappings of --set keys to values (not key=value text)",
         "[{}, {lr: 0.03}]")
    each("streams", lambda v: isinstance(v, dict), "mappings of --stream options", "[{source: mnist5k}]")
    if "stream" in cfg and not isinstance(cfg["stream"] or {}, dict):
        raise checks.fail(f"{where}: stream", cfg["stream"], "a mapping of --stream options", "stream: {}")
    if cfg.get("batch_size") is not None:
        checks.integer(f"{where}: batch_size", cfg["batch_size"], 1, fix="batch_size: 10")
    if "device" in cfg:
        checks.device(f"{where}: device", cfg["device"])
    if "retries" in cfg:
        checks.integer(f"{where}: retries", cfg["retries"], 0, fix="retries: 2")
    for key, low, example in (("checkpoint_every", 1, 1000), ("cpus_per_cell", 1, 2), ("gpus_per_cell", 0, 1)):
        if cfg.get(key) is not None:
            if key == "gpus_per_cell" and checks.is_number(cfg[key]) and 0 <= cfg[key] < float("inf"):
                continue  # Ray accepts fractional GPUs (0.5: two cells share one)
            checks.integer(f"{where}: {key}", cfg[key], low, fix=f"{key}: {example}")
    if cfg.get("storage") is not None and not isinstance(cfg["storage"], str):
        raise checks.fail(f"{where}: storage", cfg["storage"], "a path or URI (fsspec)", "storage: s3://bucket/sweeps")
    if cfg.get("runtime_env") is not None and not isinstance(cfg["runtime_env"], dict):
        raise checks.fail(f"{where}: runtime_env", cfg["runtime_env"], "a mapping (Ray's runtime_env)",
                          "runtime_env: {env_vars: {TMPDIR: /scratch}}")
    if "stack_seeds" in cfg and not isinstance(cfg["stack_seeds"], bool):
        raise checks.fail(f"{where}: stack_seeds", cfg["stack_seeds"], "true or false", "stack_seeds: true")
    if "ship_requirements" in cfg and not isinstance(cfg["ship_requirements"], bool):
        raise checks.fail(f"{where}: ship_requirements", cfg["ship_requirements"], "true or false",
                          "ship_requirements: true")
    if "out" in cfg and not isinstance(cfg["out"], str):
        raise checks.fail(f"{where}: out", cfg["out"], "a directory path", "out: runs/sweep")


def expand(cfg: dict) -> tuple[list[Cell], list[str]]:
    """The grid's cells, and a note for every combination skipped (an agent that cannot use a memory)."""
    def listed(key: str, default: list) -> list:
        v = cfg.get(key, default)
        return v if isinstance(v, list) else [v]

    presets = listed("preset", [None])
    agents = listed("agents", []) if "agents" in cfg else preset_agents(presets)  # a preset names its agent
    axes = [listed("envs", []), listed("streams", [{}]), agents, listed("memories", [None]),
            listed("budgets", [None]), listed("items", [None]), presets, listed("settings", [{}]),
            listed("seeds", [0])]
    limits.check_seed_count(len(axes[-1]), "sweep config: seeds", "seeds: [0, 1, 2]")
    n = math.prod(len(a) for a in axes)
    if n > limits.MAX_CELLS:
        raise checks.fail("sweep config", n, f"a grid of at most {limits.MAX_CELLS:,} cells", "fewer values per key")
    for memory in axes[3]:  # a misspelt memory is an error, not a silently skipped cell
        if memory is not None and not is_memory_name(memory):
            raise UnknownNameError("memory (sweep config: memories)", memory, memory_names())
    cells, skipped = [], []
    for env, stream, agent, memory, budget, items, preset, settings, seed in itertools.product(*axes):
        if preset is not None and (why := preset_mismatch(preset, env, agent)):
            skipped.append(why)
            continue
        entry = agent_entry(agent)  # built in, a plugin's entry point, or package.module:Class
        if memory is not None and memory not in entry.memories:
            skipped.append(f"{agent} + {memory}: the agent accepts {list(entry.memories) or 'no memory'}")
            continue
        if not entry.memories:
            budget = items = None  # a memoryless agent runs once per remaining combination
        cell = Cell(env, agent, memory, None if budget is None else float(budget), int(seed),
                    dict(settings or {}), {**(cfg.get("stream") or {}), **(stream or {})}, cfg.get("batch_size"),
                    cfg.get("device", "cpu"), None if items is None else int(items), preset)
        cell.config()  # every name, setting and stream option checked before any cell runs
        cells.append(cell)
    unique: dict[str, Cell] = {}
    for c in cells:  # one run per configuration, however it was spelled
        unique.setdefault(c.config_hash(), c)
    return list(unique.values()), sorted(set(skipped))


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


def run_cell(cell: dict, root: str, threads: int, checkpoint_every: int | None = None) -> dict:
    """Run one cell in a local worker process, in its directory under ``root``: resume it if a
    checkpoint exists."""
    return run_unit([cell], root, threads, checkpoint_every)[0]


def run_unit(cells: list[dict], root: str, threads: int, checkpoint_every: int | None = None) -> list[dict]:
    """Run a unit of work in a local worker process: one cell, or one configuration's seeds
    together (:func:`agents.harness.cells.execute_seeds`); each in its directory under ``root``,
    resumed where a checkpoint exists (seeds with and without one run as two groups)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

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
                                               checkpoint_every=checkpoint_every), strict=True))
    out_recs = []
    for i, out in enumerate(outs):
        rec = recs[i]
        if rec["status"] == "failed":
            results.write_text_atomic(out / "error.txt", f"{rec['error']}\n")
        out_recs.append({**rec, "dir": str(out)})
    return out_recs


def _cell_process(cells: list[dict], root: str, threads: int, checkpoint_every: int | None, conn) -> None:
    """A worker process's body: run the unit, send its records (small) through ``conn``."""
    try:
        recs = run_unit(cells, root, threads, checkpoint_every)
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
    again, as ``cl-env run`` does). ``workers=0`` runs every unit in this process, one after
    another (local backend; as a DataLoader's ``num_workers=0``).

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
    if backend == "local":
        units = seed_groups(todo) if cfg.get("stack_seeds", True) else [[c] for c in todo]
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
        if in_process:
            log(f"in this process, {threads} torch thread(s)")
        else:
            log(f"{workers} worker process(es) x {threads} torch thread(s); a dead worker's cell is retried "
                f"{retries} time(s)")
        if in_process:
            records = [progress({**rec, "attempts": 1}) for unit in units for rec in
                       run_unit([asdict(c) for c in unit], str(root), threads, cfg.get("checkpoint_every"))]
        else:
            records = _local(units, root, workers, threads, retries, progress, cfg.get("checkpoint_every"))
    elif backend == "ray":
        records = run_on_ray(todo, root, cfg, address, workers, retries, progress, log)
    else:
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    progress.close()
    log(summary_table(records))
    return records


class _Progress:
    """One line per finished cell: counts, elapsed time and an ETA; or, with ``bar``, a tqdm bar
    (on stderr) whose postfix is the last finished cell (failures and divergences still get a line)."""

    def __init__(self, total: int, log, bar: bool = False):
        self.total, self.log, self.done, self.workers = total, log, 0, 1
        self.started = time.monotonic()
        self.seconds: list[float] = []
        self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True) if bar else None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, rec: dict) -> dict:
        self.done += 1
        if rec.get("seconds"):
            self.seconds.append(rec["seconds"])
        c = Cell(**rec["cell"])
        what = c.describe()
        if rec["status"] == "completed":
            score = rec.get("score")
            head = f"done: {what}: {score:.4f}" if score is not None else f"done: {what}"
        elif rec["status"] == "diverged":
            d = rec.get("divergence") or {}
            head = f"DIVERGED: {what}: at step {d.get('step')} (task {d.get('task')})"
        else:
            head = f"FAILED: {what}: {rec.get('error')}"
        if self.bar is not None:
            budget = "default" if c.budget is None else f"{c.budget:g}"
            score = rec.get("score")
            self.bar.set_postfix_str(f"last: {c.agent} {c.memory or ''} budget={budget} seed={c.seed} "
                                     + (rec["status"] if score is None else f"{score:.4f}"), refresh=False)
            self.bar.update(1)
            if rec["status"] != "completed":
                tqdm.write(head)
            return rec
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        eta = left * mean / max(1, self.workers)
        self.log(f"[{self.done}/{self.total}] {head} ({rec.get('seconds', 0):.1f} s) | elapsed "
                 f"{_duration(elapsed)}, ETA {_duration(eta) if left else '0 s'}")
        return rec


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else (f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s")


def summary_table(records: list[dict]) -> str:
    """Counts of completed / diverged / failed cells and a Markdown row per cell."""
    counts = {k: sum(r["status"] == k for r in records) for k in ("completed", "diverged", "failed")}
    nodes = any(r.get("node") for r in records)
    lines = [f"sweep summary: {len(records)} cell(s) run: {counts['completed']} finished, "
             f"{counts['diverged']} diverged, {counts['failed']} failed",
             "| cell | status | score | seconds | attempts | " + ("node | " if nodes else "") + "directory / error |",
             "|---|---|---|---|---|" + ("---|" if nodes else "") + "---|"]
    for r in records:
        score = "-" if r.get("score") is None else f"{r['score']:.4f}"
        where = r.get("error") if r["status"] == "failed" else r.get("dir", "")
        node = ""
        if nodes:
            n = r.get("node") or {}
            node = f"{n.get('host', '?')} {str(n.get('node_id', ''))[:8]}".strip()
            back = r.get("resumed_from")
            if back:
                node += f" (resumed at step {back['steps']} from {str(back['node'].get('node_id', ''))[:8]})"
            node += " | "
        lines.append(f"| {Cell(**r['cell']).describe()} | {r['status']} | {score} | {r.get('seconds', 0):.1f} | "
                     f"{r.get('attempts', 1)} | {node}{where} |")
    return "\n".join(lines)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with code {code} without a result"


def _local(units: list[list[Cell]], root: Path, workers: int, threads: int, retries: int, progress,
           checkpoint_every: int | None = None) -> list[dict]:
    """Each unit (a cell, or one configuration's seeds trained together) in a process of its own
    (spawned), at most ``workers`` at once; a process that dies without reporting is retried up to
    ``retries`` times with its unfinished cells (they resume from their checkpoints)."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    pending = deque((unit, 1) for unit in units)
    running: dict[Any, tuple] = {}
    records = []
    while pending or running:
        while pending and len(running) < workers:
            unit, attempt = pending.popleft()
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_cell_process,
                               args=([asdict(c) for c in unit], str(root), threads, checkpoint_every, send))
            proc.start()
            send.close()
            running[proc.sentinel] = (proc, recv, unit, attempt, time.perf_counter())
        for sentinel in wait(list(running)):
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
