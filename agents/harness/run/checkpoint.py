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

import errno
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.harness.results import RunDirectoryError
from cl_env import checks
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
    """Encode and write atomically: a temporary named for this process, fsync, then ``os.replace``.

    A failed write (disk full, a file-size limit) removes the temporary and leaves the previous
    checkpoint as it was; it raises :class:`OSError` naming the file and the cause (torch reports
    a full disk as an opaque ``RuntimeError`` when it opens the file itself, so the file is opened
    here and torch writes through Python, which raises ``ENOSPC``/``EFBIG`` as they are).
    """
    path = Path(path)
    data = encode(obj)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file: name the checkpoint
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except RuntimeError as exc:  # torch's serialiser wraps a failed write
        text = str(exc)
        if "unexpected pos" in text or "No space" in text:  # torch's words for a write cut short
            code = errno.EFBIG if _at_size_limit(tmp) else errno.ENOSPC
            raise OSError(code, os.strerror(code), str(path)) from None
        raise OSError(errno.EIO, f"torch could not write it ({text.splitlines()[0][:120] if text else '?'})",
                      str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _at_size_limit(path: Path) -> bool:
    """Whether ``path`` reached this process's file-size limit (``ulimit -f``, RLIMIT_FSIZE)."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    try:
        return soft != resource.RLIM_INFINITY and path.stat().st_size >= soft
    except OSError:
        return False


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


# what a run's checkpoint holds (agents.harness.run.lane.Lane.checkpoint)
RUN_KEYS = ("agent", "R", "V", "baseline", "gen_log", "correct", "steps", "config", "config_hash", "resumes",
            "elapsed")


def _bad(path: Path | str, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} is inconsistent ({what}); it was not written by this cl-env "
                           f"run: delete it (or start the run with --overwrite) and run again")


def check_run_state(state: Any, path: str | Path, n_tasks: int, n_batches: int, batch_size: int) -> dict:
    """A run's checkpoint, checked before any of it is used: every key present, counters within
    the stream (steps <= its batches, correct predictions <= the examples seen), matrices of the
    stream's shape. A crafted file with the right hash but inconsistent contents is refused in one
    line (:class:`CheckpointError`), never a ``KeyError`` or a nonsense result."""
    if not isinstance(state, dict):
        raise _bad(path, f"a {type(state).__name__}, not a mapping")
    missing = [k for k in RUN_KEYS if k not in state]
    if missing:
        raise _bad(path, f"missing keys {missing}")

    def count(key: str, high: int) -> int:
        v = state[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= high:
            raise _bad(path, f"{key} is {str(v)[:40]}, expected an integer in [0, {high}]")
        return v

    steps = count("steps", n_batches)
    count("correct", steps * batch_size)
    count("resumes", 10**9)
    elapsed = state["elapsed"]
    if not isinstance(elapsed, (int, float)) or isinstance(elapsed, bool) or not math.isfinite(elapsed) or elapsed < 0:
        raise _bad(path, "elapsed is not a non-negative number of seconds")
    if not isinstance(state["gen_log"], dict) or not isinstance(state["agent"], dict):
        raise _bad(path, "gen_log and agent must be mappings")
    generative = bool(state["gen_log"].get("neg_test_elbo"))  # a generative run's R holds -ELBO, not accuracies
    for key, shape in (("R", (n_tasks, n_tasks)), ("V", (n_tasks, n_tasks)), ("TIL", (n_tasks, n_tasks)),
                       ("baseline", (n_tasks,))):
        if key not in state and key == "TIL":  # written since the Task-IL scores (older checkpoints lack it)
            continue
        v = state[key]
        if not isinstance(v, np.ndarray) or v.shape != shape or v.dtype.kind != "f":
            got = v.shape if isinstance(v, np.ndarray) else type(v).__name__
            raise _bad(path, f"{key} is {got}, expected a float array of shape {shape}")
        seen = v[~np.isnan(v)]  # NaN: not measured yet
        if not np.isfinite(seen).all():
            raise _bad(path, f"{key} holds infinite values")
        if not generative and ((seen < 0) | (seen > 1)).any():
            raise _bad(path, f"{key} holds accuracies outside [0, 1]")
        if v.ndim == 2:  # a row is measured whole (every task at one task end) or not at all
            holes = np.isnan(v).any(1) & ~np.isnan(v).all(1)
            if holes.any():
                raise _bad(path, f"{key} row {int(np.argmax(holes))} is partly measured")
    return state


def resume_state(path: Path, chash: str, learner: Any, n_tasks: int, n_batches: int, batch_size: int) -> dict:
    """A run's checkpoint at ``path``, checked (:func:`check_run_state`) and written by the
    configuration of hash ``chash``, its agent state loaded into ``learner``; one clear error
    otherwise. Loaded weights-only: a crafted file is refused, never run."""
    state = load(path)
    if not isinstance(state, dict) or state.get("config_hash") != chash:
        raise RunDirectoryError(
            f"{path} was not written by this configuration (hash "
            f"{checks.shown(state.get('config_hash')) if isinstance(state, dict) else None} "
            f"vs {chash}); use another --out, or --overwrite to start afresh")
    check_run_state(state, path, n_tasks, n_batches, batch_size)
    try:
        learner.load_state_dict(state["agent"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise CheckpointError(
            f"checkpoint {path}: its agent state does not fit this agent "
            f"({type(exc).__name__}: {checks.shown(str(exc), 120)}); delete it (or start the run "
            f"with --overwrite) and run again") from None
    return state
