"""Argument helpers shared by the ``cl-env`` subcommands: ``--set``-style assignments, seed lists,
exit codes."""

from __future__ import annotations

import ast

from agents.harness.sweep.grid import parse_seeds  # noqa: F401 - re-exported

DIVERGED_EXIT = 3  # a run (or a sweep cell) diverged: its result.json exists, with status "diverged"


def parse_assignments(items: list[str] | None, flag: str) -> dict:
    """``["lr=0.1", "model=mlp400"]`` -> ``{"lr": 0.1, "model": "mlp400"}`` (Python literals, else strings)."""
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"{flag} expects key=value, got {item!r} (e.g. {flag} lr=0.05)")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out
