"""Checkpoints that cannot execute code: tensors and plain containers, loaded with
``torch.load(weights_only=True)``.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a crafted ``checkpoint.pt``
would run code on ``--resume`` (or in a sweep, which resumes any cell holding a checkpoint).
Here a checkpoint holds only what PyTorch's weights-only unpickler admits: tensors, ``dict`` /
``list`` / ``tuple``, ``str``, ``int``, ``float``, ``bool``, ``None``. NumPy values that agents and
memories keep (accuracy matrices, buffer arrays, RandomState states) are encoded as tensors with
a marker (:func:`encode`) and decoded on load (:func:`decode`); anything else is refused when the
checkpoint is written, naming where it sits, so an unsafe object never reaches the disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_env.error import CLEnvError
from memory.safeload import UnsafeFileError, load_weights_only

_ND = "__ndarray__"
_NPS = "__npscalar__"


class CheckpointError(CLEnvError, ValueError):
    """A checkpoint that cannot be loaded safely (crafted, truncated, or written by an old cl-env)."""


def encode(obj: Any, where: str = "state") -> Any:
    """``obj`` with NumPy arrays and scalars as marked tensors; raises TypeError on anything a
    weights-only load would not admit."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{where}: an object array cannot be checkpointed safely")
        return {_ND: torch.from_numpy(np.ascontiguousarray(obj).copy()), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return {_NPS: obj.item(), "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a str or int")
        return {k: encode(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, torch.Size):
        return tuple(obj)
    raise TypeError(f"{where}: {type(obj).__module__}.{type(obj).__name__} cannot be checkpointed safely "
                    f"(only tensors, numbers, strings and containers of them)")


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if _ND in obj and set(obj) == {_ND, "dtype"}:
            arr = obj[_ND].numpy()
            return arr.astype(obj["dtype"], copy=False) if str(arr.dtype) != obj["dtype"] else arr
        if _NPS in obj and set(obj) == {_NPS, "dtype"}:
            return np.dtype(obj["dtype"]).type(obj[_NPS])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode(v) for v in obj)
    return obj


def save(obj: Any, path: str | Path) -> None:
    """Encode and write atomically (a temporary named for this process, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(encode(obj), tmp)
    os.replace(tmp, path)


def load(path: str | Path, what: str = "checkpoint") -> Any:
    """Load with ``torch.load(weights_only=True)`` and decode.

    Raises:
        CheckpointError: The file is empty, truncated, not a torch file, or holds anything but
            tensors and plain containers (a crafted payload is refused before it can run).
    """
    fix = f"delete {path} (or start the run with --overwrite) and run again"
    try:
        raw = load_weights_only(path, what, fix)
    except UnsafeFileError as exc:
        raise CheckpointError(str(exc)) from None
    return decode(raw)
