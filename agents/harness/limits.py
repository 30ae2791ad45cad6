"""The one table of numeric ranges: every number a run's configuration holds is checked here.

:func:`check_config` is called by :func:`agents.harness.results.run_config` (so ``cl-env run``,
``run --seeds``, ``sweep`` and the Python API check the same ranges before any data is loaded).
A value outside its range is refused with one line naming the key, the value (rendered in part
when huge), the range and a fix; an int too large for a float is compared exactly, never
converted. The ranges are those a run can honour on one machine: above them a replay batch, a
stream or a seed list ends in a MemoryError or an allocation failure, and a weight above
``FLOAT_MAX`` cannot be turned into a float32 factor by torch. docs/concepts.md lists them.

A key the table does not name still has a range by its type: integers within ``[-INT_MAX, INT_MAX]``,
floats finite and within ``[-FLOAT_MAX, FLOAT_MAX]``; the settings' own lower bounds (a count is
>= 1, a weight >= 0) are checked where the agent declares them (:meth:`agents.base.Agent.check_setting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cl_env import checks

INT_MAX = 10**9
FLOAT_MAX = 1e30  # float32 holds up to 3.4e38: a larger factor cannot reach torch as a number
MAX_SEEDS = 1000  # seeds of one `--seeds` range or a sweep's `seeds` list
MAX_CELLS = 100_000  # cells of one sweep grid


@dataclass(frozen=True)
class Range:
    """``[low, high]`` (``low_open``: ``(low, high]``); ``integer``: ints only."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def text(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def holds(self, value: Any) -> bool:
        if self.integer and not checks.is_int(value):
            return False
        if not checks.is_number(value) or not checks.is_finite(value):
            return False
        return (value > self.low if self.low_open else value >= self.low) and value <= self.high


BATCH = Range(1, 10_000, integer=True)
SAMPLES = Range(1, 1_000_000, integer=True)
PASSES = Range(1, 10_000, integer=True)
SEED = Range(0, 2**32 - 1, integer=True)
RATE = Range(0, FLOAT_MAX)

# section -> key -> range; section "" is the configuration's top level
TABLE: dict[str, dict[str, Range]] = {
    "": {
        "seed": SEED,
        "batch_size": BATCH,
        "budget": Range(0, 10**8, low_open=True),  # effective real examples (also <= the stream's examples)
    },
    "settings": {
        "lr": RATE, "step_size": RATE, "min_lr": RATE,
        "replay_batch": BATCH, "ref_batch": BATCH, "batch": BATCH, "candidates": BATCH,
        "fisher_samples": SAMPLES, "importance_samples": SAMPLES,
        "epochs": PASSES, "steps": PASSES, "recalls": Range(1, 1000, integer=True),
    },
    "memory_options": {
        "items": Range(1, 10**7, integer=True), "capacity": Range(0, 10**7, integer=True),
        "per_task": Range(0, 10**7, integer=True), "batch": BATCH, "epochs": Range(0, 10_000, integer=True),
        "steps": Range(0, 10**6, integer=True), "iterations": Range(0, 10**6, integer=True),
    },
    "stream_kwargs": {
        "seed": SEED,
        "n_tasks": Range(1, 1000, integer=True),
        "train_per_task": Range(1, 10**6, integer=True), "test_per_task": Range(1, 10**6, integer=True),
        "train_per_class": Range(1, 10**6, integer=True), "classes_per_task": Range(1, 10_000, integer=True),
        "cifar10_examples": Range(1, 10**6, integer=True), "validation_fraction": Range(0, 1),
    },
}
ANY_INT = Range(-INT_MAX, INT_MAX, integer=True)
ANY_FLOAT = Range(-FLOAT_MAX, FLOAT_MAX)

_FLAG = {"": "", "settings": "--set ", "memory_options": "--set memory.", "stream_kwargs": "--stream "}


def range_of(section: str, key: str, value: Any) -> Range | None:
    """The range of ``section.key`` (``section`` ``""`` for a top-level key); None for a value
    that is not a number (bools, strings and None are checked where they are used)."""
    if not checks.is_number(value):
        return None
    named = TABLE.get(section, {}).get(key.rsplit(".", 1)[-1])
    if named is not None:
        return named
    return ANY_INT if checks.is_int(value) else ANY_FLOAT


def check_value(section: str, key: str, value: Any) -> None:
    """Refuse ``value`` outside its range (:class:`cl_env.checks.InvalidValueError`)."""
    r = range_of(section, key, value)
    if r is None or r.holds(value):
        return
    name = f"{section}.{key}" if section else key
    flag = _FLAG.get(section, "")
    fix = f"{flag}{key}=..." if section else f"--{key.replace('_', '-')} ..."
    raise checks.fail(name, value, f"{r.text()} (the ranges: docs/concepts.md)", fix)


def _numbers(value: Any, prefix: str = "", depth: int = 0):
    """``(dotted key, number)`` pairs of a nested configuration value (a few levels deep)."""
    if isinstance(value, dict) and depth < 8:
        for k, v in value.items():
            yield from _numbers(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
    elif isinstance(value, (list, tuple)) and depth < 8:
        for v in value[:10_000]:
            yield from _numbers(v, prefix, depth + 1)
    elif checks.is_number(value):
        yield prefix, value


def check_config(config: dict) -> dict:
    """Every number of a run's configuration (:func:`agents.harness.results.run_config`) in its
    range; returns ``config``."""
    for key in ("seed", "batch_size", "budget"):
        if config.get(key) is not None:
            check_value("", key, config[key])
    for section in ("settings", "memory_options", "stream_kwargs"):
        for key, value in _numbers(config.get(section) or {}):
            check_value(section, key, value)
    return config


def check_seed_count(n: int, where: str, fix: str) -> None:
    """At most :data:`MAX_SEEDS` seeds in one call or sweep."""
    if n > MAX_SEEDS:
        raise checks.fail(where, n, f"at most {MAX_SEEDS} seeds at once (the ranges: docs/concepts.md)", fix)
