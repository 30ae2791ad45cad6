"""The ``cl-env`` command line: thin fronts over the library, one module per command.

``run`` (:mod:`~agents.harness.cli.run`), ``compare`` (:mod:`~agents.harness.cli.compare`),
``list`` (:mod:`~agents.harness.cli.listing`), ``data`` (:mod:`~agents.harness.cli.data`),
``report`` (:mod:`~agents.harness.cli.report`), ``sweep`` (:mod:`~agents.harness.cli.sweep`),
``frontier`` (:mod:`~agents.harness.cli.frontier`), ``distill`` (:mod:`~agents.harness.cli.distill`)
and ``pretrain-srm`` (:mod:`~agents.harness.cli.pretrain`); shared argument helpers in
:mod:`~agents.harness.cli.args`, operating-system errors in :mod:`~agents.harness.cli.errors`.
This module assembles the parser and holds :func:`main` (the ``cl-env`` console script).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from agents.harness.cli import compare, data, distill, listing, pretrain, report, run
from agents.harness.cli import sweep as sweep_command

# re-exported: tests, benchmarks and scripts import them from here
from agents.harness.cli.args import (  # noqa: F401
    DIVERGED_EXIT,
    _restore_positional,
    parse_assignments,
    parse_seeds,
)
from agents.harness.cli.errors import ENVIRONMENT_EXIT, describe_os_error, os_error_exit  # noqa: F401
from agents.harness.cli.frontier import add_frontier_parser
from cl_env.error import CLEnvError


def _version() -> str:
    try:
        return version("cl-env")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cl-env", description="Continual-learning benchmarks")
    p.add_argument("--version", action="version", version=f"cl-env {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    compare.add_parser(sub)
    listing.add_parser(sub)
    data.add_parser(sub)
    report.add_parser(sub)
    sweep_command.add_parser(sub)
    add_frontier_parser(sub)
    distill.add_parser(sub)
    pretrain.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        _restore_positional(parser, args, "env_id", {"set": "--set", "stream": "--stream"})
    elif args.command == "pretrain-srm":
        _restore_positional(parser, args, "env_id", {"stream": "--stream"})
    try:
        return args.func(args)
    except BrokenPipeError:  # `cl-env compare runs | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except CLEnvError as exc:  # a user error raised where no subcommand caught it: still one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be written or read, a full disk: one line, no traceback
        return os_error_exit(exc)
    except KeyboardInterrupt:
        print("interrupted (a run's last checkpoint is kept: continue it with --resume)", file=sys.stderr)
        return 130

