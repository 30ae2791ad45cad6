"""A frontier's grid (one env, one agent; memories with their settings x budgets x seeds), its
cells for the sweep machinery, and running or reading it (``cl-env frontier``).

A grid file (YAML or TOML; the keys of :data:`KEYS`)::

    env: MNISTRotations-v0
    agent: er
    memories:
      - reservoir
      - task_ring
      - srm: {items: [200, 400], n_sets: 1}      # a mapping: each list value is a grid axis
      - quantized: [{bits: 4, scale: 2}, {bits: 8, scale: 1}]   # a list: the variants as written
    budgets: [50, 100, 200]
    seeds: 0-2                                  # or [0, 1, 2]
    settings: {lr: 0.1}                         # the agent's settings, for every cell
    stream: {}                                  # --stream options
    out: runs/frontier
    # any of retries, checkpoint_every, cpus_per_cell, gpus_per_cell, storage, runtime_env,
    # ship_requirements, stack_seeds: as in a sweep config (agents.harness.sweep)

A memory's settings are its ``--set memory.KEY=VALUE`` options. Each cell is a sweep cell
(:class:`agents.harness.sweep.cells.Cell`): same directory layout, same configuration hash, so a cell
finished by ``cl-env sweep`` or ``cl-env run --seeds`` with the same configuration is not run again.
The grid is written to ``OUT/frontier.json``; ``cl-env report OUT`` finds it there and shows the
frontier, and ``cl-env frontier --read-only --out OUT`` reads it back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from agents.harness import frontier, results, sweep
from agents.harness.sweep.cells import Cell
from agents.harness.sweep.grid import parse_seeds
from agents.registry import agent_entry
from cl_env import checks
from cl_env.error import UnknownNameError
from memory import is_memory_name, memory_names

GRID_FILE = "frontier.json"
SWEEP_KEYS = ("retries", "checkpoint_every", "cpus_per_cell", "gpus_per_cell", "storage", "runtime_env",
              "ship_requirements", "stack_seeds")
KEYS = ("env", "agent", "memories", "budgets", "seeds", "settings", "stream", "batch_size", "device", "out",
        *SWEEP_KEYS)


@dataclass
class Grid:
    """A frontier's grid. ``memories``: ``(name, settings)`` pairs, one plotted line each."""

    env: str
    agent: str
    memories: list[tuple[str, dict]]
    budgets: list[float]
    seeds: list[int]
    settings: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    batch_size: int | None = None
    device: str = "cpu"
    out: str = "runs/frontier"
    sweep_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The grid as a mapping :func:`grid_from_mapping` reads back (each memory's settings as
        an explicit one-variant list, so nothing is expanded twice)."""
        return {"env": self.env, "agent": self.agent,
                "memories": [{name: [opts]} if opts else name for name, opts in self.memories],
                "budgets": self.budgets, "seeds": self.seeds, "settings": self.settings, "stream": self.stream,
                "batch_size": self.batch_size, "device": self.device, "out": self.out, **self.sweep_options}

    def cells(self) -> list[Cell]:
        """Every cell (memory variant x budget x seed), each configuration once however spelled."""
        unique: dict[str, Cell] = {}
        for (name, opts), budget, seed in itertools.product(self.memories, self.budgets, self.seeds):
            settings = {**self.settings, **{f"memory.{k}": v for k, v in opts.items()}}
            c = Cell(self.env, self.agent, name, float(budget), int(seed), settings, dict(self.stream),
                     self.batch_size, self.device)
            unique.setdefault(c.config_hash(), c)
        return list(unique.values())

    def sweep_config(self) -> dict:
        """The sweep config its cells run under (``out`` and the sweep options)."""
        return {"out": self.out, "envs": [self.env], "agents": [self.agent], "seeds": self.seeds,
                **self.sweep_options}


def memory_variants(spec, where: str = "memories") -> list[tuple[str, dict]]:
    """``["reservoir", {"srm": {"items": [200, 400]}}, {"codec": [{"quality": 50}]}]`` ->
    ``[("reservoir", {}), ("srm", {"items": 200}), ("srm", {"items": 400}), ("codec", {"quality": 50})]``.

    A name alone: the memory's defaults. A name mapped to a mapping: every list value is a grid
    axis (their product). A name mapped to a list of mappings: those variants, as written.
    """
    example = "memories: [reservoir, {srm: {items: [200, 400]}}]"
    if not isinstance(spec, list) or not spec:
        raise checks.fail(where, spec, "a non-empty list of memory names or {name: settings}", example)
    out: list[tuple[str, dict]] = []
    for item in spec:
        if isinstance(item, str) and item:
            out.append((item, {}))
            continue
        if not (isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str)):
            raise checks.fail(where, item, "a memory name or a one-key mapping {name: settings}", example)
        name, opts = next(iter(item.items()))
        if opts is None:
            out.append((name, {}))
        elif isinstance(opts, dict):
            keys = sorted(opts)
            axes = [opts[k] if isinstance(opts[k], list) else [opts[k]] for k in keys]
            if any(not a for a in axes):
                raise checks.fail(f"{where}: {name}", opts, "settings whose lists are not empty", example)
            out += [(name, dict(zip(keys, values, strict=True))) for values in itertools.product(*axes)]
        elif isinstance(opts, list) and opts and all(isinstance(o, dict) for o in opts):
            out += [(name, dict(o)) for o in opts]
        else:
            raise checks.fail(f"{where}: {name}", opts, "a mapping of settings or a list of such mappings",
                              "{quantized: {bits: [2, 4]}} or {quantized: [{bits: 4, scale: 2}]}")
    return out


def _seeds(value, where: str) -> list[int]:
    if isinstance(value, str) or checks.is_int(value):
        return parse_seeds(str(value))
    if isinstance(value, list) and value and all(checks.is_int(s) and 0 <= s < 2**32 for s in value):
        if len(set(value)) != len(value):
            raise checks.fail(where, value, "each seed once", "seeds: [0, 1, 2]")
        return [int(s) for s in value]
    raise checks.fail(where, value, "a list of non-negative integers or a range such as 0-2", "seeds: [0, 1, 2]")


def grid_from_mapping(cfg: dict, where: str = "frontier grid") -> Grid:
    """A checked :class:`Grid` from a grid file's mapping (or ``frontier.json``).

    Raises:
        ValueError, TypeError, UnknownNameError: An unknown key, name, setting or stream option;
            a memory the agent cannot use; a bad budget or seed (one line, naming the key and a fix).
    """
    unknown = sorted(set(cfg) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys: {sorted(KEYS)}")
    for key, example in (("env", "env: MNISTRotations-v0"), ("agent", "agent: er")):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise checks.fail(f"{where}: {key}", cfg.get(key), "a name (a string)", example)
    budgets = cfg.get("budgets")
    if not isinstance(budgets, list) or not budgets or not all(
            checks.is_number(b) and 0 < b < float("inf") for b in budgets):
        raise checks.fail(f"{where}: budgets", budgets, "a non-empty list of positive numbers (effective "
                          "real examples of storage)", "budgets: [50, 100, 200]")
    for key in ("settings", "stream"):
        if not isinstance(cfg.get(key) or {}, dict):
            raise checks.fail(f"{where}: {key}", cfg[key], "a mapping", f"{key}: {{}}")
    sweep_options = {k: cfg[k] for k in SWEEP_KEYS if k in cfg}
    out = cfg.get("out") or "runs/frontier"
    sweep.check_config({**sweep_options, "out": out, "device": cfg.get("device", "cpu"),
                        "batch_size": cfg.get("batch_size")}, where)
    grid = Grid(cfg["env"], cfg["agent"], memory_variants(cfg.get("memories"), f"{where}: memories"),
                [float(b) for b in dict.fromkeys(budgets)], _seeds(cfg.get("seeds", [0]), f"{where}: seeds"),
                dict(cfg.get("settings") or {}), dict(cfg.get("stream") or {}), cfg.get("batch_size"),
                cfg.get("device", "cpu"), str(out), sweep_options)
    check_grid(grid)
    return grid


def check_grid(grid: Grid) -> None:
    """Names, memories the agent accepts, each memory's setting keys and every cell's
    configuration, before anything runs."""
    entry = agent_entry(grid.agent)
    for name, _ in grid.memories:
        if not is_memory_name(name):
            raise UnknownNameError("memory", name, memory_names())
        if name not in entry.memories:
            raise ValueError(f"agent {grid.agent!r} cannot use memory {name!r}; it accepts "
                             f"{list(entry.memories) or 'no memory'} (a frontier compares memories of one "
                             f"learner: pick one that accepts them all)")
    for c in grid.cells():
        c.config()  # every name, setting, memory option and stream option (RunConfig.build)


def load_grid(path: str | Path) -> Grid:
    """A grid file (YAML or TOML)."""
    return grid_from_mapping(sweep.read_config_file(path, "frontier grid"), str(path))


def read_grid(root: str | Path) -> Grid | None:
    """The grid a frontier wrote to ``root/frontier.json``, or None when there is none."""
    path = Path(root) / GRID_FILE
    if not path.is_file():
        return None
    return grid_from_mapping(results.read_json(path), str(path))


def write_grid(grid: Grid) -> None:
    Path(grid.out).mkdir(parents=True, exist_ok=True)
    results.write_json_atomic(Path(grid.out) / GRID_FILE, grid.to_dict())


def select(grid: Grid, runs: list[results.Run]) -> tuple[list[results.Run], list[Cell]]:
    """The loaded runs that are cells of ``grid`` (by configuration hash; anything else in the
    directory is ignored) and the cells that have no result yet."""
    cells = {c.config_hash(): c for c in grid.cells()}
    mine = [r for r in runs if results.config_hash(r.config) in cells]
    have = {results.config_hash(r.config) for r in mine}
    return mine, [c for h, c in cells.items() if h not in have]


def points_of(grid: Grid, runs: list[results.Run]) -> tuple[list[frontier.Point], list[Cell]]:
    """The frontier's points from loaded runs (grouped by :func:`agents.harness.results.group_runs`)
    and the grid's cells without a result."""
    mine, missing = select(grid, runs)
    groups = results.group_runs(mine)
    frontier.check_one_experiment(groups)
    return frontier.points(groups), missing


def run_grid(grid: Grid, workers: int | None = None, backend: str = "local", address: str | None = None,
             log=print, bar: bool = False) -> list[dict]:
    """Run the grid's unfinished cells through the sweep machinery (:func:`agents.harness.sweep.sweep`:
    local worker processes, ``workers=0`` in this process, or Ray); finished cells are skipped."""
    write_grid(grid)
    return sweep.sweep(grid.sweep_config(), workers=workers, backend=backend, address=address, log=log,
                       cells=grid.cells(), bar=bar)


def write_outputs(grid: Grid, pts: list[frontier.Point], missing: list[Cell]) -> dict[str, Path]:
    """``OUT/frontier.md``, ``frontier.csv`` and ``frontier.png``; returns their paths."""
    root = Path(grid.out)
    root.mkdir(parents=True, exist_ok=True)
    table = frontier.frontier_table(pts)
    title = frontier.describe(grid.env, grid.agent, pts)
    notes = list(table.notes)
    if missing:
        notes.append(f"{len(missing)} of {len(grid.cells())} cell(s) have no result yet: "
                     + "; ".join(c.describe() for c in missing[:5]) + (" ..." if len(missing) > 5 else ""))
    md = f"# Frontier: {title}\n\n{table.markdown()}\n" + "".join(f"\n{n}\n" for n in notes)
    paths = {"markdown": root / "frontier.md", "csv": root / "frontier.csv", "png": root / "frontier.png"}
    results.write_text_atomic(paths["markdown"], md)
    results.write_text_atomic(paths["csv"], results.to_csv([table]))
    import matplotlib.pyplot as plt

    fig = frontier.plot_frontier(pts, paths["png"], title=title)
    plt.close(fig)
    return paths
