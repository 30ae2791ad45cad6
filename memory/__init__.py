"""Memory modules. ``MEMORIES`` is the one table of registry names.

Depends on ``cl_env`` only (never on ``agents``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cl_env.error import UnknownNameError
from cl_env.install import require_own_packages

require_own_packages()  # another distribution's `memory` merged into this folder: say so, and the fix

from memory.base import Memory, MemorySpec, ReplayBatch, budget_bits  # noqa: E402

MEMORIES: dict[str, str] = {
    "reservoir": "memory.buffers:ReservoirBuffer",
    "task_ring": "memory.buffers:TaskRingBuffer",
    "logit_reservoir": "memory.buffers:LogitReservoir",
    "class_balanced": "memory.buffers:ClassBalancedBuffer",
    "herding": "memory.buffers:HerdingExemplars",
    "self_recall": "memory.self_recall:SelfRecall",
    "srm": "memory.srm:SRM",
    "teacher": "memory.generative:GenerativeTeacher",
    "addressable": "memory.addressable:Addressable",
    "quantized": "memory.quantized:Quantized",
    "codec": "memory.codec:Codec",
}


ENTRY_POINTS = "cl_env.memories"  # a user's package registers memories here (pyproject entry points)


def load_object(path: str, kind: str, names: Callable[[], dict]):
    """``"package.module:Class"`` -> the class, with one clear error when it does not import
    (``names()`` lists the valid choices; called only then, it reads the installed plugins)."""
    module, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnknownNameError(kind, path, names(), note=f"{path!r} does not import ({exc})") from None
    return obj


def plugin_names(group: str) -> dict[str, str]:
    """``{name: "module:Class"}`` of the entry points in ``group`` (installed user packages)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=group)}


def memory_names() -> dict[str, str]:
    """Every memory name: the built-in table, then those of installed plugins."""
    return {**plugin_names(ENTRY_POINTS), **MEMORIES}


def memory_class(name: str) -> type[Memory]:
    """The class registered under ``name``, or named ``"package.module:Class"`` (a user's memory)."""
    if name in MEMORIES:
        return load_object(MEMORIES[name], "memory", memory_names)
    plugins = plugin_names(ENTRY_POINTS)
    if name in plugins:
        return load_object(plugins[name], "memory", memory_names)
    if ":" in name:
        cls = load_object(name, "memory", memory_names)
        if not (isinstance(cls, type) and issubclass(cls, Memory)):
            raise UnknownNameError("memory", name, memory_names(), note=f"{name!r} is not a memory.Memory subclass")
        return cls
    raise UnknownNameError("memory", name, memory_names())


def is_memory_name(name: str) -> bool:
    """A registered or plugin name, or a ``module:Class`` path."""
    return name in MEMORIES or ":" in name or name in plugin_names(ENTRY_POINTS)


__all__ = ["MEMORIES", "Memory", "MemorySpec", "ReplayBatch", "budget_bits", "is_memory_name", "memory_class",
           "memory_names"]
