"""What every seed of one :func:`agents.harness.run.run_seeds` call shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agents.harness.config import RunConfig


@dataclass
class RunOptions:
    """What every seed of a :func:`run_seeds` call shares: the configuration (its seed is the
    first seed's; each seed's own is ``config.with_seed``) and how the run is driven."""

    config: RunConfig
    checkpoint_every: int | None
    log_every: int
    log_formats: list[str]
    progress: bool | str | None
    stop_after_task: int | None
    on_checkpoint: Callable[[Path, int], None] | None
    started: float
    multi: bool
    callbacks: tuple = ()  # the user's callbacks (agents.harness.run.callbacks.Callback), after the run's own

    @property
    def env_id(self) -> str:
        return self.config.env

    @property
    def agent(self) -> str:
        return self.config.agent

    @property
    def device(self) -> str:
        return self.config.device
