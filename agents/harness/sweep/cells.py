"""A sweep's cell: one run of the grid, its identity and directory, and running it (shared by
the local worker processes of :mod:`agents.harness.sweep.local` and the Ray tasks of
:mod:`agents.harness.sweep.ray`)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from agents.harness import results
from agents.harness.runner import run_seeds


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    env: str
    agent: str
    memory: str | None
    budget: float | None
    seed: int
    settings: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    batch_size: int | None = None
    device: str = "cpu"
    items: int | None = None  # an exact item count instead of a budget (--items)
    preset: str | None = None

    def config(self) -> dict:
        """The run's resolved configuration (what its ``result.json`` will carry)."""
        return results.run_config(self.env, self.agent, self.memory, self.budget, self.seed, self.device,
                                  self.settings, self.stream, self.batch_size, self.items, preset=self.preset)

    def config_hash(self) -> str:
        return results.config_hash(self.config())

    def directory(self, root: Path) -> Path:
        cfg = self.config()
        budget = "default" if cfg["budget"] is None else f"{cfg['budget']:g}"
        size = f"i{cfg['memory_items']}" if cfg.get("memory_items") is not None else f"b{budget}"
        name = f"{cfg['agent']}-{cfg['memory'] or 'none'}-{size}-{results.group_hash(cfg)[:8]}"
        return Path(root) / self.env / name / f"seed{self.seed}"

    def describe(self) -> str:
        cfg = self.config()
        budget = "default" if cfg["budget"] is None else f"{cfg['budget']:g}"
        size = f"items={cfg['memory_items']}" if cfg.get("memory_items") is not None else f"budget={budget}"
        extra = (f" stream={self.stream}" if self.stream else "") + (f" {self.settings}" if self.settings else "")
        return f"{self.env} {self.agent} memory={cfg['memory']} {size} seed={self.seed}{extra}"


def record_of(c: Cell, r, started: float) -> dict:
    """A finished cell's record from its :class:`agents.harness.runner.Result`."""
    score = r.retained_accuracy if r.retained_accuracy is not None else (r.neg_test_elbo or [None])[-1]
    return {"cell": asdict(c), "status": r.status, "score": score, "divergence": r.divergence,
            "seconds": time.perf_counter() - started}


def execute(c: Cell, out: Path, resume: bool, started: float | None = None, **run_options) -> dict:
    """Run cell ``c`` in ``out`` (resuming from its checkpoint when ``resume``); returns its record.
    A run that raises is the cell's failure (``error``), not the sweep's."""
    return execute_seeds([c], [out], resume, started, **run_options)[0]


def same_but_seed(cells: list[Cell]) -> bool:
    """Whether ``cells`` are one configuration's seeds (one :func:`agents.harness.results.group_hash`,
    distinct seeds)."""
    return (len({results.group_hash(c.config()) for c in cells}) == 1
            and len({c.seed for c in cells}) == len(cells))


def execute_seeds(cells: list[Cell], outs: list[Path], resume: bool, started: float | None = None,
                  **run_options) -> list[dict]:
    """Run the seeds of one configuration together in this process
    (:func:`agents.harness.runner.run_seeds`: one stacked step for all where the agent allows);
    one record per cell, as :func:`execute` gives. A failure fails every cell of the group."""
    if not same_but_seed(cells):
        raise ValueError("execute_seeds takes the seeds of one configuration")
    started = time.perf_counter() if started is None else started
    c = cells[0]
    torch.manual_seed(c.seed)
    try:
        rs = run_seeds(c.env, agent=c.agent, memory=c.memory, budget=c.budget, items=c.items,
                       seeds=[x.seed for x in cells],
                       settings=c.settings, stream_kwargs=c.stream, batch_size=c.batch_size, device=c.device,
                       outs=outs, resume=resume, overwrite=not resume, progress=False, preset=c.preset,
                       **run_options)
    except Exception as exc:  # a failed cell (or group) is reported, the sweep goes on
        return [{"cell": asdict(x), "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                 "seconds": time.perf_counter() - started} for x in cells]
    return [record_of(x, r, started) for x, r in zip(cells, rs, strict=True)]
