"""Memory modules. ``MEMORIES`` is the one table of registry names.

Depends on ``cl_env`` only (never on ``agents``).
"""

from __future__ import annotations

import importlib

from cl_env.error import UnknownNameError
from cl_env.install import require_own_packages

require_own_packages()  # another distribution's `memory` merged into this folder: say so, and the fix

from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits  # noqa: E402

MEMORIES: dict[str, str] = {
    "reservoir": "memory.buffers:ReservoirBuffer",
    "task_ring": "memory.buffers:TaskRingBuffer",
    "self_recall": "memory.self_recall:SelfRecall",
    "srm": "memory.srm:SRM",
    "teacher": "memory.generative:GenerativeTeacher",
    "addressable": "memory.addressable:Addressable",
}


def memory_class(name: str) -> type[Memory]:
    """The class registered under ``name``."""
    if name not in MEMORIES:
        raise UnknownNameError("memory", name, MEMORIES)
    module, cls = MEMORIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["MEMORIES", "Memory", "MemorySpec", "ReplayBatch", "budget_bits", "memory_class"]
