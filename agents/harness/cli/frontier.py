"""``cl-env frontier``: run (or read) a grid of memories x budgets x seeds for one env and one
agent, and write the accuracy-vs-bits table (Markdown, CSV) and plot (PNG).

    cl-env frontier MNISTRotations-v0 --agent er --memories reservoir,task_ring --budgets 50,100 \\
        --seeds 0-2 --out runs/frontier
    cl-env frontier grid.yaml                       # the grid from a file (agents.harness.frontier_grid)
    cl-env frontier --read-only --out runs/frontier # the table and plot of what is there

Finished cells are never run again (a sweep's cells: same directories and hashes); ``--read-only``
runs nothing. Writes ``OUT/frontier.md``, ``frontier.csv``, ``frontier.png`` and ``frontier.json``
(the grid, which ``cl-env report OUT`` reads to show the frontier).
"""

from __future__ import annotations

import argparse
import itertools
import sys

from tqdm.auto import tqdm

from agents.harness import frontier_grid, results, sweep
from agents.harness.cli.args import DIVERGED_EXIT, parse_assignments, parse_seeds, parse_value
from agents.harness.frontier_grid import Grid
from cl_env import checks
from cl_env.error import CLEnvError


def _words(text: str) -> list[str]:
    return [w.strip() for w in str(text).split(",") if w.strip()]


def parse_memory_sets(items: list[str] | None, memories: list[str]) -> list[tuple[str, dict]]:
    """``--memories reservoir,srm --memory-set srm:items=200,400 --memory-set srm:n_sets=1`` ->
    ``[("reservoir", {}), ("srm", {"items": 200, "n_sets": 1}), ("srm", {"items": 400, "n_sets": 1})]``:
    comma-separated values are a grid axis, several keys of one memory combine (their product);
    each value is read as ``--set`` reads one (:func:`agents.harness.cli.args.parse_value`:
    ``true`` is a boolean, so the cell is the grid file's cell, with the same hash).
    A memory name may itself hold a colon (``package.module:Class:KEY=VALUE``)."""
    fix = "--memory-set srm:items=200,400"
    axes: dict[str, dict[str, list]] = {m: {} for m in memories}
    for item in items or []:
        left, eq, raw = item.partition("=")
        name, colon, key = left.rpartition(":")
        if not (eq and colon and name and key.strip() and raw.strip()):
            raise checks.fail("--memory-set", item, "MEMORY:KEY=VALUE[,VALUE...]", fix)
        if name not in axes:
            raise checks.fail("--memory-set", item, f"a memory of --memories {memories}",
                              f"add {name} to --memories")
        axes[name][key.strip()] = [parse_value(w) for w in _words(raw)]
    out = []
    for m in memories:
        keys = sorted(axes[m])
        out += [(m, dict(zip(keys, v, strict=True))) for v in itertools.product(*(axes[m][k] for k in keys))]
    return out


def grid_of(args: argparse.Namespace) -> Grid:
    """The grid from the positional (an env id or a grid file), the flags over it, or the grid a
    frontier wrote to ``--out`` (``frontier.json``) when neither is given."""
    target = args.target
    if target is not None and target.endswith((".yaml", ".yml", ".toml")):
        cfg = sweep.read_config_file(target, "frontier grid")
        where = target
    elif target is not None:
        cfg, where = {"env": target}, "cl-env frontier"
    else:
        old = frontier_grid.read_grid(args.out) if args.out else None
        if old is None:
            raise ValueError("cl-env frontier needs an env id or a grid file (e.g. cl-env frontier MNISTRotations-v0 "
                             "--agent er --memories reservoir,task_ring --budgets 50,100), or --out DIR holding a "
                             "frontier.json from an earlier frontier")
        cfg, where = old.to_dict(), str(args.out)
    if args.memory_set and not args.memories:
        raise ValueError("--memory-set needs --memories (the memories whose settings it sets), "
                         "e.g. --memories reservoir,srm --memory-set srm:items=200,400")
    flags = {"agent": args.agent, "out": args.out, "device": args.device, "batch_size": args.batch_size}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    cfg.setdefault("agent", "er")
    if args.memories:
        cfg["memories"] = [{m: [o]} if o else m for m, o in parse_memory_sets(args.memory_set, _words(args.memories))]
    if args.budgets:
        budgets = []
        for w in _words(args.budgets):
            try:
                budgets.append(float(w))
            except ValueError:
                raise checks.fail("--budgets", args.budgets, "comma-separated positive numbers",
                                  "--budgets 50,100,200") from None
        cfg["budgets"] = budgets
    if args.seeds:
        cfg["seeds"] = parse_seeds(args.seeds)
    cfg["settings"] = {**(cfg.get("settings") or {}), **parse_assignments(args.set, "--set")}
    cfg["stream"] = {**(cfg.get("stream") or {}), **parse_assignments(args.stream, "--stream")}
    return frontier_grid.grid_from_mapping(cfg, where)


def cmd_frontier(args: argparse.Namespace) -> int:
    """Run (or read) the grid, then write the table and the plot."""
    bar = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        grid = grid_of(args)
        if args.workers is not None:
            checks.integer("--workers", args.workers, 0, fix="--workers 2 (0: in this process)")
        records = []
        if args.read_only:
            frontier_grid.write_grid(grid)  # so that `cl-env report OUT` shows this frontier
        else:
            log = _bar_log if bar else print
            records = frontier_grid.run_grid(grid, workers=args.workers, backend=args.backend, address=args.address,
                                             log=log, bar=bar)
        runs, skipped = results.find_results([grid.out])
        for note in skipped:
            print(f"skipped: {note}", file=sys.stderr)
        pts, missing = frontier_grid.points_of(grid, runs)
        if not pts and not args.read_only:  # it ran, and nothing finished: the cells' own failures
            failed = sum(r["status"] == "failed" for r in records)
            print(f"error: none of this frontier's {len(grid.cells())} cell(s) has a result under {grid.out}: "
                  f"{failed} failed (their errors: the summary above, and error.txt in each cell's directory)",
                  file=sys.stderr)
            return 1
        if not pts:
            raise ValueError(f"no result of this frontier's {len(grid.cells())} cell(s) under {grid.out}: "
                             f"run it without --read-only (or point --out at the directory that holds them)")
        paths = frontier_grid.write_outputs(grid, pts, missing)
    except (CLEnvError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((paths["markdown"]).read_text())
    if missing:
        print(f"{len(missing)} of {len(grid.cells())} cell(s) have no result"
              + (" (run without --read-only to run them)" if args.read_only else " (failed: see the summary above)"))
    print(f"wrote {paths['markdown']}, {paths['csv']} and {paths['png']} (cl-env report {grid.out} shows them)")
    failed = [r for r in records if r["status"] == "failed"]
    diverged = [r for r in records if r["status"] == "diverged"]
    return 1 if failed else (DIVERGED_EXIT if diverged else 0)


def _bar_log(text: str) -> None:
    """Messages above the progress bar, not through it."""
    tqdm.write(str(text))


def add_frontier_parser(sub) -> argparse.ArgumentParser:
    """Register ``cl-env frontier`` on the CLI's subparsers."""
    f = sub.add_parser("frontier", help="retained accuracy against stored bits: memories x budgets x seeds for "
                                        "one env and one agent (table and plot)",
                       description=__doc__.replace("``", "`"), formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("target", nargs="?", help="an env id (cl-env list) or a grid file (.yaml/.yml/.toml with the keys "
                                             f"{', '.join(frontier_grid.KEYS)})")
    f.add_argument("--agent", default=None, help="the learner (default er)")
    f.add_argument("--memories", default=None, metavar="NAMES",
                   help="comma-separated memory names (registered, or package.module:Class) the agent accepts")
    f.add_argument("--memory-set", dest="memory_set", action="append", default=None, metavar="MEMORY:KEY=VALUES",
                   help="a memory's setting, comma-separated values a grid axis (repeatable), "
                        "e.g. srm:items=200,400")
    f.add_argument("--budgets", default=None, help="comma-separated budgets in effective real examples, e.g. 50,100")
    f.add_argument("--seeds", default=None, help="e.g. 0-2 or 0,1,2 (default 0)")
    f.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="an agent setting for every cell (repeatable)")
    f.add_argument("--stream", action="append", default=None, metavar="KEY=VALUE",
                   help="a stream option (repeatable), e.g. n_tasks=5")
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default cpu)")
    f.add_argument("--out", default=None, help="the frontier's directory (default runs/frontier)")
    f.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the cores / OMP_NUM_THREADS; 0: in this process)")
    f.add_argument("--backend", default="local", choices=["local", "ray"])
    f.add_argument("--address", default=None, help="Ray cluster address (ray.init(address=...))")
    f.add_argument("--read-only", action="store_true", help="run nothing: the table and plot of the results there")
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: on a terminal; otherwise one line per finished cell)")
    f.set_defaults(func=cmd_frontier)
    return f
