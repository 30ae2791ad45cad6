"""Distilled addressable memories (Deng & Russakovsky, *Remember the Past*): compress-then-recall.

One module per part: :mod:`~memory.addressable.budget` (eq. 4's storage),
:mod:`~memory.addressable.memories` (bases and addressing, eq. 2),
:mod:`~memory.addressable.unroll` (BPTT through SGD with momentum),
:mod:`~memory.addressable.distillation` (Algorithm 1's outer loop and the evaluation protocol) and
:mod:`~memory.addressable.compress_recall` (the :class:`Addressable` memory, §5.2). Every public
name is importable from ``memory.addressable``.
"""

from __future__ import annotations

from memory.addressable.budget import FLOAT_BITS, floats_for, rows_per_class
from memory.addressable.compress_recall import MIN_BASES, Addressable
from memory.addressable.distillation import (
    Distillation,
    Distiller,
    accuracy,
    distill,
    evaluate_data,
    train_fresh,
)
from memory.addressable.memories import AddressableMemories, bases_from_data
from memory.addressable.unroll import (
    Unroll,
    bptt_gradient,
    minibatches,
    unroll_backward,
    unroll_forward,
)
from memory.base import to_uint8

__all__ = ["FLOAT_BITS", "MIN_BASES", "Addressable", "AddressableMemories", "Distillation", "Distiller",
           "Unroll", "accuracy", "bases_from_data", "bptt_gradient", "distill", "evaluate_data", "floats_for",
           "minibatches", "rows_per_class", "to_uint8", "train_fresh", "unroll_backward", "unroll_forward"]
