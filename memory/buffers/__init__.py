"""Buffers of real examples: a reservoir (experience replay), GEM's per-task ring buffer, DER's
logit reservoir, GDumb's class-balanced buffer and iCaRL's herding exemplars.

Images are stored as ``uint8`` (8 bits per pixel, as real examples are); ``storage_bits`` counts
pixels at 8 bits, each label at ``ceil(log2 n_classes)`` bits and, for the reservoir, each task id
at ``ceil(log2 n_tasks)`` bits. The ring buffer needs no task ids: the slot says the task.

One module per write policy: :mod:`~memory.buffers.slots` (the slot base and
:func:`reservoir_slots`), :mod:`~memory.buffers.reservoir`, :mod:`~memory.buffers.task_ring`,
:mod:`~memory.buffers.class_balanced`, :mod:`~memory.buffers.herding`. Every public name is
importable from ``memory.buffers``.
"""

from __future__ import annotations

from memory.buffers.class_balanced import ClassBalancedBuffer, balanced_slot
from memory.buffers.herding import HerdingExemplars, herding_order
from memory.buffers.reservoir import LogitReservoir, ReservoirBuffer
from memory.buffers.slots import SlotBuffer, reservoir_slots
from memory.buffers.task_ring import TaskRingBuffer

__all__ = ["ClassBalancedBuffer", "HerdingExemplars", "LogitReservoir", "ReservoirBuffer", "SlotBuffer",
           "TaskRingBuffer", "balanced_slot", "herding_order", "reservoir_slots"]
