"""Grouping runs by configuration (all but the seed), the keys that vary between groups and the
notes and statistics a group's row shows."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from agents.harness.config import canonical, config_hash, identity
from agents.harness.results.configuration import flatten
from agents.harness.results.loading import Run


@dataclass
class Group:
    """Runs of one configuration (all but the seed) and one status bucket."""

    key: str
    status: str
    runs: list[Run] = field(default_factory=list)
    duplicates: list[Run] = field(default_factory=list)  # same configuration and seed, not counted

    @property
    def config(self) -> dict:
        return {k: v for k, v in identity(self.runs[0].config).items() if k != "seed"}

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def group_runs(runs: list[Run]) -> list[Group]:
    """Group by configuration except the seed; diverged runs form groups of their own."""
    groups: dict[tuple[str, str], Group] = {}
    for r in runs:
        bucket = "diverged" if r.status == "diverged" else "completed"
        key = (r.group, bucket)
        groups.setdefault(key, Group(r.group, bucket)).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: (r.seed, str(r.path)))
        seen: set[str] = set()
        kept = []
        for r in g.runs:  # a run copied or repeated into two directories counts once
            h = config_hash(r.config)
            (g.duplicates if h in seen else kept).append(r)
            seen.add(h)
        g.runs = kept
    return list(groups.values())


def data_source(run_or_group: Run | Group) -> str:
    """The data source a run used (``mnist5k``, ``fashion_mnist``, ``cifar10`` ...)."""
    run = run_or_group.runs[0] if isinstance(run_or_group, Group) else run_or_group
    src = (run.data.get("data") or {}).get("data", {}) or {}
    if isinstance(src, dict) and src.get("source"):
        return str(src["source"])
    stream = run.config.get("stream_kwargs") or {}
    return str(stream.get("source") or stream.get("mnist_source") or "-")


# keys always shown as their own columns (not repeated among the differing settings)
_SHOWN = {"env", "agent", "memory", "stream_kwargs.source", "seed"}


def varying_config_keys(configs: list[dict], skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between the ``configs`` that have them.

    A key only some configurations have (a setting of one agent, an option of one stream) counts
    when those disagree on it; the others show ``-`` there.
    """
    flats = [flatten(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - set(skip))
    return [k for k in keys if len({canonical(f[k]) for f in flats if k in f}) > 1]


def varying_keys(groups: list[Group]) -> list[str]:
    """Identity keys (seed aside) that differ between ``groups``: the table's extra columns."""
    return varying_config_keys([g.config for g in groups], _SHOWN)


def _runtime_notes(g: Group) -> list[str]:
    notes = []
    rts = [r.config.get("runtime") or {} for r in g.runs]
    threads = sorted({str(rt.get("torch_threads")) for rt in rts if rt.get("torch_threads") is not None})
    if len(threads) > 1:
        notes.append(f"mixed torch threads {'/'.join(threads)}")
    for name in ("torch", "cl-env"):
        vs = sorted({str((rt.get("versions") or {}).get(name) or rt.get(name.replace("-", "_")))
                     for rt in rts} - {"None"})
        if len(vs) > 1:
            notes.append(f"mixed {name} {'/'.join(vs)}")
    commits = sorted({str(rt.get("git_commit"))[:8] for rt in rts if rt.get("git_commit")})
    if len(commits) > 1:
        notes.append(f"mixed commits {'/'.join(commits)}")
    return notes


def _stats(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def _text(mean: float | None, std: float | None, scale: float, digits: int) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _divergence_note(g: Group) -> str:
    parts = []
    for r in g.runs:
        d = r.data.get("divergence") or {}
        where = f"task {d.get('task')}, step {d.get('step')}" if d else "unknown step"
        parts.append(f"seed {r.seed} diverged at {where}" + (f" ({d['reason']})" if d.get("reason") else ""))
    return "; ".join(parts)
