"""Argument helpers shared by the ``cl-env`` subcommands: ``--set``-style assignments, seed lists,
exit codes."""

from __future__ import annotations

import argparse
import ast

from agents.harness.sweep.grid import parse_seeds  # noqa: F401 - re-exported
from agents.registry import agent_names
from cl_env import checks
from memory import memory_names

DIVERGED_EXIT = 3  # a run (or a sweep cell) diverged: its result.json exists, with status "diverged"


def parse_value(raw: str):
    """One command-line value: a Python literal, else the string; ``true``/``false``/``null`` as
    YAML and JSON spell them are booleans and None too (``--set``, ``--memory-set``, ``--stream``)."""
    if raw.strip() in ("true", "false"):
        return raw.strip() == "true"
    if raw.strip() == "null":  # YAML's and JSON's None
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def parse_assignments(items: list[str] | None, flag: str) -> dict:
    """``["lr=0.1", "model=mlp400"]`` -> ``{"lr": 0.1, "model": "mlp400"}`` (:func:`parse_value`)."""
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"{flag} expects key=value, got {item!r} (e.g. {flag} lr=0.05)")
        key, raw = item.split("=", 1)
        out[key.strip()] = parse_value(raw)
    return out


def _check_options(args: argparse.Namespace, positive: tuple = (), counts: tuple = ()) -> None:
    """Numeric options of a subcommand: one clear error naming the option (exit code 2)."""
    for name in positive:
        checks.number(f"--{name.replace('_', '-')}", getattr(args, name), 0.0, strict_minimum=True)
    for name in counts:
        checks.integer(f"--{name.replace('_', '-')}", getattr(args, name), 1)
    if hasattr(args, "seed"):
        checks.integer("--seed", args.seed, 0, 2**32 - 1, fix="--seed 0")
    if hasattr(args, "device"):
        checks.device("--device", args.device)


def _names(kind: str) -> str:
    """The registered names, for help texts (computed when the parser is built)."""
    return ", ".join(agent_names() if kind == "agent" else memory_names())


def _assignments(parser: argparse.ArgumentParser, flag: str, dest: str, help: str) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable; values without ``=`` are given back to the
    positional argument by :func:`_restore_positional` (so ``--set lr=0.05 ENV`` works)."""
    parser.add_argument(flag, dest=dest, action="extend", nargs="+", metavar="KEY=VALUE", default=None, help=help)


def _restore_positional(parser: argparse.ArgumentParser, args: argparse.Namespace, positional: str,
                        flags: dict[str, str]) -> None:
    """Give the positional back the word a ``--set``-style option took (``--set lr=0.05 ENV``)."""
    if getattr(args, positional) is None:
        taken = [(dest, v) for dest in flags for v in (getattr(args, dest) or []) if "=" not in v]
        if len(taken) == 1:  # exactly one word that is not KEY=VALUE: the positional
            dest, word = taken[0]
            rest = [v for v in getattr(args, dest) if v != word]
            setattr(args, dest, rest or None)
            setattr(args, positional, word)
    # any other word without "=" is reported by parse_assignments, in one line
    if getattr(args, positional) is None:
        parser.error(f"the following arguments are required: {positional}")

