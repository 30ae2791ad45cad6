"""``cl-env report``: a self-contained HTML report of a run or sweep directory."""

from __future__ import annotations

import argparse
import sys

from agents.harness.report import build_report


def cmd_report(args: argparse.Namespace) -> int:
    """A self-contained HTML report of a run or sweep directory."""
    try:
        path = build_report(args.dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("report", help="self-contained HTML report of a run or sweep directory")
    rp.add_argument("dir")
    rp.add_argument("--out", default=None, help="the HTML file (default: DIR/report.html)")
    rp.set_defaults(func=cmd_report)
