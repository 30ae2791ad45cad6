"""``cl-env sweep``: a grid of runs from a YAML/TOML config, on local processes or Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agents.harness import sweep as sweep_module
from agents.harness.cli.args import DIVERGED_EXIT
from agents.harness.sweep import expand, load_config, sweep
from cl_env.error import CLEnvError


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid of cells from a YAML/TOML config on local processes or Ray."""
    try:
        cfg = load_config(args.config)
        if args.out:
            cfg["out"] = args.out
        if args.storage:
            cfg["storage"] = args.storage
        if args.dry_run:
            cells, skipped = expand(cfg)
            for note in skipped:
                print(f"skipped: {note}")
            root = Path(cfg.get("out", "runs/sweep"))
            for c in cells:
                print(f"{c.describe()} -> {c.directory(root)} ({c.config_hash()})")
            print(f"{len(cells)} cells")
            return 0
        records = sweep(cfg, workers=args.workers, backend=args.backend, address=args.address)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in records if r["status"] == "failed"]
    diverged = [r for r in records if r["status"] == "diverged"]
    print(f"ran {len(records)} cells ({len(failed)} failed, {len(diverged)} diverged); compare with: "
          f"cl-env compare {cfg.get('out', 'runs/sweep')}")
    return 1 if failed else (DIVERGED_EXIT if diverged else 0)


def add_parser(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser("sweep", help="a grid of runs from a YAML/TOML config (local processes or Ray)",
                        description=sweep_module.__doc__.replace("``", "`"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("config", help=f"a .yaml/.yml/.toml file with the keys {', '.join(sorted(sweep_module.KEYS))}")
    sw.add_argument("--workers", type=int, default=None,
                    help="processes (default: the cores of this process's affinity / OMP_NUM_THREADS)")
    sw.add_argument("--backend", default="local", choices=["local", "ray"])
    sw.add_argument("--address", default=None, help="Ray cluster address (ray.init(address=...))")
    sw.add_argument("--out", default=None, help="override the config's out directory")
    sw.add_argument("--storage", default=None,
                    help="Ray: where cells' checkpoints go, a path or fsspec URI every node can reach "
                         "(overrides the config's storage; default OUT/.storage)")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    sw.set_defaults(func=cmd_sweep)
