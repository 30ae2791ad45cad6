"""The schema of ``result.json``: what every loaded result is checked against before any tool uses it.

:func:`problem` returns the first thing wrong with a parsed result (or None);
:func:`agents.harness.results.load_result` refuses such a file with that reason, and ``compare``,
``report``, ``sweep`` and ``run --seeds`` name it on stderr and leave it out. Checked:

- **Types.** ``env``/``agent`` strings, ``memory`` a string or null, ``seed`` an integer in
  [0, 2**32 - 1], ``config``/``data``/``counters`` mappings, ``warnings`` strings, matrices lists of
  rows of numbers (or null where a cell was not measured), lists of numbers, counts non-negative
  integers; nesting at most ``MAX_DEPTH`` levels (a deeply nested file is refused, never a
  ``RecursionError``).
- **Ranges.** Accuracies (matrices, retained accuracy, online accuracy, baselines) are fractions
  in [0, 1]; backward and forward transfer and forgetting (differences of accuracies; forgetting is
  negative when a task's final accuracy is its best) in [-1, 1]; storage, items, times and
  rates finite and non-negative.
- **Identity.** ``config_hash`` is the hash of ``config``; the top-level ``env``, ``agent``,
  ``memory`` and ``seed`` equal the configuration's (an edited configuration with its old hash, or
  a result copied under another name, is refused rather than grouped wrongly).
- **Consistency.** A completed classifier's matrix is square and complete, and its retained
  accuracy, backward transfer and forgetting are those of the matrix (to ``TOLERANCE``), so a
  metric cannot be edited away from the numbers it summarises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from cl_env import metrics
from cl_env.checks import shown

MAX_DEPTH = 32
MAX_ROWS = 10_000  # tasks of a matrix
TOLERANCE = 1e-6
STATUSES = ("completed", "diverged")

FRACTIONS = ("retained_accuracy", "online_accuracy", "validation_retained_accuracy", "task_il_retained_accuracy")
TRANSFERS = ("backward_transfer", "forward_transfer", "forgetting")  # differences of fractions: [-1, 1]
COUNTS = ("storage_bits", "overhead_bits", "items")
AMOUNTS = ("effective_examples", "wall_time_s", "examples_per_s")
FRACTION_MATRICES = ("accuracy_matrix", "validation_accuracy_matrix", "task_il_accuracy_matrix")
NUMBER_LISTS = ("neg_test_elbo", "frechet_distance", "zd_consistency")
MAPPINGS = ("data", "counters", "divergence")


def depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of ``obj`` (iterative, so any depth is measured without recursion); stops
    counting past ``limit``."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _in(v: Any, low: float, high: float) -> bool:
    return _number(v) and low <= v <= high


def _matrix_problem(key: str, m: Any, low: float | None, high: float | None) -> str | None:
    if not isinstance(m, list) or len(m) > MAX_ROWS:
        return f"{key} is not a list of rows"
    for i, row in enumerate(m):
        if not isinstance(row, list) or len(row) > MAX_ROWS:
            return f"{key}[{i}] is not a list of numbers"
        for j, v in enumerate(row):
            if v is None:
                continue
            if not _number(v) or (low is not None and not low <= v <= high):
                rng = "" if low is None else f" in [{low:g}, {high:g}]"
                return f"{key}[{i}][{j}] is {shown(v)}, expected a number{rng}"
    if len({len(row) for row in m}) > 1:
        return f"{key} has rows of different lengths"
    return None


def _field_problem(data: dict) -> str | None:
    """Types and ranges of the top-level fields."""
    for key in ("env", "agent"):
        if not isinstance(data[key], str):
            return f"{key} is {shown(data[key])}, expected a string"
    if data.get("memory") is not None and not isinstance(data["memory"], str):
        return f"memory is {shown(data['memory'])}, expected a string or null"
    seed = data["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        return f"seed is {shown(seed)}, expected an integer in [0, {2**32 - 1}]"
    if data.get("status") not in STATUSES:
        return f"unknown status {shown(data.get('status'))}; expected one of {list(STATUSES)}"
    for key in FRACTIONS:
        if data.get(key) is not None and not _in(data[key], 0.0, 1.0):
            return f"{key} is {shown(data[key])}, expected a fraction in [0, 1] or null"
    for key in TRANSFERS:
        if data.get(key) is not None and not _in(data[key], -1.0, 1.0):
            return f"{key} is {shown(data[key])}, expected a number in [-1, 1] or null"
    for key in COUNTS:
        v = data.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            return f"{key} is {shown(v)}, expected a non-negative integer"
    for key in AMOUNTS:
        if data.get(key) is not None and not _in(data[key], 0.0, math.inf):
            return f"{key} is {shown(data[key])}, expected a finite non-negative number"
    for key in FRACTION_MATRICES:
        if data.get(key) is not None:
            found = _matrix_problem(key, data[key], 0.0, 1.0)
            if found:
                return found
    if data.get("elbo_matrix") is not None:
        found = _matrix_problem("elbo_matrix", data["elbo_matrix"], None, None)
        if found:
            return found
    for key in NUMBER_LISTS + ("baseline_accuracy",):
        v = data.get(key)
        if v is None:
            continue
        if not isinstance(v, list) or any(x is not None and not _number(x) for x in v):
            return f"{key} is {shown(v)}, expected a list of numbers"
        if key == "baseline_accuracy" and any(x is not None and not 0 <= x <= 1 for x in v):
            return f"{key} holds values outside [0, 1]"
    for key in MAPPINGS:
        if data.get(key) is not None and not isinstance(data[key], dict):
            return f"{key} is {shown(data[key])}, expected a mapping"
    if data.get("warnings") is not None and (not isinstance(data["warnings"], list)
                                             or not all(isinstance(w, str) for w in data["warnings"])):
        return "warnings is not a list of strings"
    return None


def _identity_problem(data: dict, hash_of: Callable[[dict], str]) -> str | None:
    cfg = data["config"]
    for key in ("runtime", "derived"):  # outside the identity, but read by compare and report
        if cfg.get(key) is not None and not isinstance(cfg[key], dict):
            return f"config.{key} is {shown(cfg[key])}, expected a mapping"
    if (cfg.get("runtime") or {}).get("versions") is not None and not isinstance(cfg["runtime"]["versions"], dict):
        return f"config.runtime.versions is {shown(cfg['runtime']['versions'])}, expected a mapping"
    h = data.get("config_hash")
    if not isinstance(h, str) or not re.fullmatch(r"[0-9a-f]{16}", h):
        return f"config_hash is {shown(h)}, expected 16 hex digits"
    actual = hash_of(cfg)
    if actual != h:
        return (f"config_hash {h} is not the hash of its config ({actual}): the configuration was edited "
                f"after the run, so the result cannot be attributed to it")
    for key in ("env", "agent", "memory", "seed"):
        if key in cfg and cfg[key] != data.get(key):
            return f"{key} is {shown(data.get(key))} but its config says {shown(cfg[key])}"
    return None


def _consistency_problem(data: dict) -> str | None:
    """A completed classifier's summary metrics against its own matrix."""
    if data["status"] != "completed":
        return None
    if data.get("neg_test_elbo") is not None:
        if not data["neg_test_elbo"] or not data.get("frechet_distance"):
            return "a completed generative result with an empty neg_test_elbo or frechet_distance"
        return None
    R = data.get("accuracy_matrix")
    if not isinstance(R, list) or not R or data.get("retained_accuracy") is None:
        return "a completed result without accuracy_matrix/retained_accuracy or neg_test_elbo"
    if len(R) != len(R[0]) or any(v is None for row in R for v in row):
        return f"accuracy_matrix of a completed run must be square and complete ({len(R)} x {len(R[0])})"
    M = np.asarray(R, dtype=np.float64)
    for key, fn in (("retained_accuracy", metrics.retained_accuracy),
                    ("backward_transfer", metrics.backward_transfer), ("forgetting", metrics.forgetting)):
        v = data.get(key)
        if v is not None and abs(v - fn(M)) > TOLERANCE:
            return f"{key} {shown(v)} disagrees with its accuracy_matrix ({fn(M):.6f})"
    return None


def problem(data: dict, hash_of: Callable[[dict], str]) -> str | None:
    """The first thing wrong with a parsed ``result.json`` (legacy files already normalised), or None.

    Args:
        data: The parsed file, with ``env``, ``agent``, ``seed`` and a mapping ``config``.
        hash_of: :func:`agents.harness.results.config_hash`.
    """
    if depth(data) > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    return _field_problem(data) or _identity_problem(data, hash_of) or _consistency_problem(data)
