"""``cl-env compare``: the table of results, runs grouped by configuration (seeds aggregated)."""

from __future__ import annotations

import argparse
import io
import sys

from agents.harness import results
from agents.harness.report import retention_vs_storage


def cmd_compare(args: argparse.Namespace) -> int:
    runs, skipped = results.find_results(args.dirs)
    for note in skipped:
        print(f"skipped: {note}", file=sys.stderr)
    if not runs:
        print(f"error: no readable result.json found under {args.dirs}", file=sys.stderr)
        return 2
    tables = results.comparison_tables(runs)
    if args.format == "csv":
        sys.stdout.write(results.to_csv(tables))
    elif args.format == "json":
        sys.stdout.write(results.to_json(tables, results.group_runs(runs), skipped))
    else:
        sys.stdout.write(results.to_markdown(tables))
    if args.csv:
        results.write_text_atomic(args.csv, results.to_csv(tables))
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot:
        import matplotlib.pyplot as plt

        fig, buf = retention_vs_storage(runs), io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        results.write_bytes_atomic(args.plot, buf.getvalue())  # never half a PNG
        print(f"wrote {args.plot} (retained accuracy against incremental storage)", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compare", help="table of results, runs grouped by configuration (seeds aggregated)")
    c.add_argument("dirs", nargs="+", help="run or sweep directories (every result.json under them)")
    c.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"],
                   help="markdown (mean ± std text), csv (numeric mean/std/n columns) or json")
    c.add_argument("--csv", default=None, help="also write the CSV to this file")
    c.add_argument("--plot", default=None, help="write a retention-vs-storage plot (PNG) here")
    c.set_defaults(func=cmd_compare)
