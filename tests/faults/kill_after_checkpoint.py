"""SIGKILL a run at a known point instead of a race: ``CL_ENV_TEST_KILL_AFTER_CHECKPOINT`` is
``N[;TEXT[;MARKER]]``: the process kills itself right after its N-th checkpoint is on disk, if
its run directory's path contains TEXT, and only while the file MARKER does not exist (created
just before the kill, so a retried run goes through)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "CL_ENV_TEST_KILL_AFTER_CHECKPOINT"


def maybe_kill(out: Path | None, n: int, spec: str | None = None) -> None:
    """Kill this process if checkpoint number ``n`` of the run in ``out`` matches ``spec``."""
    spec = os.environ.get(ENV) if spec is None else spec
    if not spec or out is None:
        return
    count, text, marker = (spec.split(";") + ["", ""])[:3]
    if int(count) != n or (text and text not in str(out)):
        return
    if marker:
        if Path(marker).exists():
            return
        Path(marker).write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    """Wrap :meth:`agents.harness.run.lane.Lane.checkpoint` so that every checkpoint written is
    counted per run and :func:`maybe_kill` asked after it."""
    from agents.harness.run.lane import Lane

    original = Lane.checkpoint
    if getattr(original, "kills", False):
        return

    def checkpoint(self) -> None:
        original(self)
        if self.ckpt_path is not None:
            self.faults_checkpoints = getattr(self, "faults_checkpoints", 0) + 1
            maybe_kill(self.out, self.faults_checkpoints)

    checkpoint.kills = True
    Lane.checkpoint = checkpoint
