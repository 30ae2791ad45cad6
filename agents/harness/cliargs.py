"""Argument helpers shared by the ``cl-env`` subcommands: ``--set``-style assignments, seed lists,
exit codes."""

from __future__ import annotations

import ast

from agents.harness import limits
from cl_env import checks

DIVERGED_EXIT = 3  # a run (or a sweep cell) diverged: its result.json exists, with status "diverged"


def parse_assignments(items: list[str] | None, flag: str) -> dict:
    """``["lr=0.1", "model=mlp400"]`` -> ``{"lr": 0.1, "model": "mlp400"}`` (Python literals, else strings;
    ``true``/``false`` as YAML and JSON spell them are booleans too)."""
    out = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"{flag} expects key=value, got {item!r} (e.g. {flag} lr=0.05)")
        key, raw = item.split("=", 1)
        if raw.strip() in ("true", "false"):
            out[key.strip()] = raw.strip() == "true"
            continue
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def parse_seeds(spec: str) -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,2,5`` -> [0, 2, 5]; ranges and lists combine (``0-2,7``);
    at most :data:`agents.harness.limits.MAX_SEEDS` seeds."""
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise checks.fail("--seeds", spec, "seeds and ascending ranges of non-negative integers",
                              "--seeds 0-4 (or 0,1,2)")
        if int(hi or lo) > 2**32 - 1:
            raise checks.fail("--seeds", spec, f"seeds in [0, {2**32 - 1}]", "--seeds 0-4")
        # counted before any list is built: a range of a billion seeds is refused, not a MemoryError
        limits.check_seed_count(len(seeds) + (int(hi) - int(lo) + 1 if hi else 1), "--seeds", "--seeds 0-4")
        seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    if len(set(seeds)) != len(seeds):
        raise checks.fail("--seeds", spec, "each seed once", "--seeds 0-4")
    return seeds

