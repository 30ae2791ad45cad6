"""The accuracy-vs-bits frontier: which memory buys the most retained accuracy per stored bit.

Pure pieces, over results loaded and grouped by :mod:`agents.harness.results` (one group = one
configuration, seeds aggregated; nothing here reads a file):

- :func:`points` — one :class:`Point` per (memory, memory settings, budget): stored kilobytes,
  items, retained accuracy, forgetting and wall time, mean ± sample std over the seeds.
  Diverged groups are points of their own, flagged, and never on the front.
- :func:`pareto_front` — the points no other point beats on both axes (fewer stored bits and
  higher retained accuracy).
- :func:`frontier_table` — the table (Markdown and CSV through :mod:`agents.harness.results`).
- :func:`plot_frontier` — retained accuracy against stored kilobytes (log x-axis), one line per
  memory and its settings, error bars, the Pareto front marked.

Stored kilobytes are the memory's incremental storage, ``storage_bits / 8000`` (1 kB = 1,000
bytes), the quantity ``--budget`` caps; sunk overhead (an autoencoder's parameters) is reported
in the CSV as ``overhead_kb`` and is not on the x-axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.harness import results

# the keys a frontier's configurations may differ in; anything else is another experiment
AXES = ("memory", "memory_options", "budget")
BITS_PER_KB = 8000


@dataclass(frozen=True)
class Point:
    """One configuration of the frontier (a memory, its settings, a budget), seeds aggregated.

    ``*_std`` is the sample standard deviation over the seeds (None for one seed); accuracies
    are fractions in [0, 1]; ``status`` is ``completed`` or ``diverged``.
    """

    memory: str
    options: dict
    budget: float | None
    status: str
    seeds: tuple[int, ...]
    kb: float | None
    kb_std: float | None
    items: float | None
    retained: float | None
    retained_std: float | None
    forgetting: float | None
    forgetting_std: float | None
    wall_s: float | None
    overhead_kb: float | None
    config_hash: str
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def settings(self) -> str:
        """The memory settings as text (``bits=4, scale=2``), ``-`` for the memory's defaults."""
        return settings_text(self.options)

    @property
    def line(self) -> str:
        """The plot's line this point belongs to: the memory and its settings (not the budget)."""
        return self.memory if not self.options else f"{self.memory} ({self.settings})"


def settings_text(options: dict) -> str:
    """``{"scale": 2, "bits": 4}`` -> ``"bits=4, scale=2"``; ``{}`` -> ``"-"``."""
    return ", ".join(f"{k}={results.canonical(v) if isinstance(v, (dict, list)) else v}"
                     for k, v in sorted(options.items())) or "-"


def check_one_experiment(groups: list[results.Group]) -> None:
    """A frontier compares memories for one env, one learner and one set of settings.

    Raises:
        ValueError: The groups differ in a key other than the memory, its settings and the
            budget (names the keys and the fix).
    """
    keys = [k for k in results.varying_config_keys([g.config for g in groups])
            if k.split(".", 1)[0] not in AXES]
    if keys:
        raise ValueError(f"the results mix configurations: they differ in {keys}, not only in the memory, "
                         f"its settings and the budget; a frontier is one env, one agent and one set of "
                         f"settings: point it at one frontier's directory (or another --out)")


def points(groups: list[results.Group]) -> list[Point]:
    """One point per group (see :func:`agents.harness.results.group_runs`), sorted by memory,
    settings and budget. Classifier groups only: a generative run has no retained accuracy."""
    out = []
    for g in groups:
        if any(r.generative for r in g.runs):
            continue
        cfg = g.config
        diverged = g.status == "diverged"

        def stat(key: str, scale: float = 1.0, runs=g.runs, diverged=diverged, storage=False):
            if diverged and not storage:
                return None, None
            mean, std, _ = results._stats([None if r.data.get(key) is None else r.data[key] / scale
                                           for r in runs])
            return mean, std

        kb, kb_std = stat("storage_bits", BITS_PER_KB, storage=True)
        items, _ = stat("items", storage=True)
        overhead, _ = stat("overhead_bits", BITS_PER_KB, storage=True)
        ra, ra_std = stat("retained_accuracy")
        fg, fg_std = stat("forgetting")
        wall, _ = stat("wall_time_s", storage=True)
        notes = [results._divergence_note(g)] if diverged else []
        if g.duplicates:
            notes.append(f"{len(g.duplicates)} duplicate run(s) of a seed not counted")
        out.append(Point(cfg.get("memory") or "-", dict(cfg.get("memory_options") or {}), cfg.get("budget"),
                         g.status, tuple(g.seeds), kb, kb_std, items, ra, ra_std, fg, fg_std, wall, overhead,
                         g.key, notes))
    return sorted(out, key=lambda p: (p.memory, p.settings, p.budget or 0.0, p.status))


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points that no other point dominates, for *smaller* x and *larger* y.

    Point ``j`` dominates ``i`` when ``x_j <= x_i`` and ``y_j >= y_i`` with one of them strict;
    equal points do not dominate each other (both are on the front). Returned in order of
    increasing x (ties by decreasing y, then index): along the front y increases with x.
    O(n log n): after sorting by (x, -y), a point is on the front iff its y exceeds the best y of
    every point with a strictly smaller x, or it equals a front point.
    """
    if len(xs) != len(ys):
        raise ValueError(f"pareto_front: {len(xs)} x values but {len(ys)} y values")
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i], i))
    front: list[int] = []
    best = float("-inf")  # the best y among points of strictly smaller x
    k = 0
    while k < len(order):
        x = xs[order[k]]
        same = [i for i in order[k:] if xs[i] == x]  # equal x: sorted by decreasing y
        top = ys[same[0]]
        if top > best:
            front += [i for i in same if ys[i] == top]
            best = top
        k += len(same)
    return front


def front_of(pts: Sequence[Point]) -> list[int]:
    """:func:`pareto_front` over the completed points that have a storage and an accuracy."""
    ok = [i for i, p in enumerate(pts) if p.status == "completed" and p.kb is not None and p.retained is not None]
    return [ok[j] for j in pareto_front([pts[i].kb for i in ok], [pts[i].retained for i in ok])]


def _pm(mean: float | None, std: float | None, scale: float, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}")


COLUMNS = ["memory", "memory settings", "budget", "seeds", "stored kB", "items", "retained acc %",
           "forgetting %", "wall time s", "Pareto", "status"]


def frontier_table(pts: Sequence[Point], title: str = "frontier") -> results.Table:
    """The frontier as a :class:`agents.harness.results.Table`: a row per point, mean ± std over
    the seeds; records with numeric ``*_mean``/``*_std`` columns for the CSV."""
    front = set(front_of(pts))
    rows, records = [], []
    for i, p in enumerate(pts):
        budget = "default" if p.budget is None else f"{p.budget:g}"
        seeds = ",".join(map(str, p.seeds))
        status = "**DIVERGED**" if p.status == "diverged" else p.status
        rows.append([p.memory, p.settings, budget, seeds, _pm(p.kb, p.kb_std, 1, 2),
                     _pm(p.items, None, 1, 0), _pm(p.retained, p.retained_std, 100, 2),
                     _pm(p.forgetting, p.forgetting_std, 100, 2), _pm(p.wall_s, None, 1, 1),
                     "yes" if i in front else "", status + (f" ({'; '.join(p.notes)})" if p.notes else "")])
        records.append({
            "memory": p.memory, "memory_settings": p.settings, "budget": p.budget, "seeds": seeds,
            "stored_kb_mean": p.kb, "stored_kb_std": p.kb_std, "items_mean": p.items,
            "retained_accuracy_mean": p.retained, "retained_accuracy_std": p.retained_std,
            "retained_accuracy_n": 0 if p.retained is None else len(p.seeds),
            "forgetting_mean": p.forgetting, "forgetting_std": p.forgetting_std, "wall_time_s_mean": p.wall_s,
            "overhead_kb_mean": p.overhead_kb, "pareto": i in front, "status": p.status,
            "config_hash": p.config_hash, "notes": "; ".join(p.notes)})
    notes = ["stored kB: incremental storage (storage_bits / 8000); Pareto: no other row stores fewer bits "
             "and retains more"]
    if any(p.status == "diverged" for p in pts):
        notes.append("diverged runs are rows of their own, never averaged in and never on the front")
    return results.Table(title, list(COLUMNS), rows, records, notes)


def plot_frontier(pts: Sequence[Point], path: str | Path | None = None, title: str = "",
                  size: tuple[float, float] = (7.0, 4.5), dpi: int = 120):
    """Retained accuracy (%) against stored kilobytes (log x), mean ± std over seeds (error bars
    on both axes), one line per memory and its settings through its budgets; the Pareto front as
    a dashed black staircase with ringed points. Diverged points are left out (a cross in the
    legend says how many). Written to ``path`` at exactly ``size * dpi`` pixels when given;
    returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, ax = plt.subplots(figsize=size, layout="constrained")
    drawn = [p for p in pts if p.status == "completed" and p.kb is not None and p.retained is not None]
    lines: dict[str, list[Point]] = {}
    for p in drawn:
        lines.setdefault(p.line, []).append(p)
    for label, ps in lines.items():
        ps = sorted(ps, key=lambda p: p.kb)
        ax.errorbar([p.kb for p in ps], [100 * p.retained for p in ps],
                    xerr=[p.kb_std or 0.0 for p in ps], yerr=[100 * (p.retained_std or 0.0) for p in ps],
                    marker="o", ms=5, capsize=3, lw=1.5, label=label)
    front = [drawn[i] for i in front_of(drawn)]
    if front:
        xs, ys = [p.kb for p in front], [100 * p.retained for p in front]
        ax.plot(xs, ys, "k--", lw=1, drawstyle="steps-post", zorder=3)
        ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="k", lw=1.5, zorder=4, label="Pareto front")
    diverged = sum(p.status == "diverged" for p in pts)
    if diverged:
        ax.plot([], [], "rx", label=f"{diverged} diverged (not drawn)")
    if drawn:
        ax.set_xscale("log")
        kbs = [p.kb for p in drawn if p.kb > 0]
        if kbs and max(kbs) / min(kbs) < 10**1.5:  # a short span: about six round ticks across it
            ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(min(kbs), max(kbs), 6)})
            ax.xaxis.set_major_locator(ticker.FixedLocator(ticks))
        else:
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no completed runs yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("stored kilobytes (incremental storage, log scale)")
    ax.set_ylabel("retained accuracy % (mean ± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    if title:
        ax.set_title(title, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def describe(grid_env: str, agent: str, pts: Sequence[Point]) -> str:
    """The plot's title: env, agent and how many seeds."""
    seeds = sorted({s for p in pts for s in p.seeds})
    return f"{grid_env} · {agent} · seeds {','.join(map(str, seeds)) or '-'}"


__all__ = ["AXES", "COLUMNS", "Point", "check_one_experiment", "describe", "front_of", "frontier_table",
           "pareto_front", "plot_frontier", "points", "settings_text"]
