"""Result files: their names, the errors of a bad run directory or result file, atomic writers
(a reader sees the old file or the new one, never a part) and the strict JSON reader."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from cl_env.error import CLEnvError

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
# configuration sections that are recorded but do not make a different run
STATUSES = ("completed", "diverged")
# keys a result.json always has
REQUIRED = ("env", "agent", "seed", "config")


class RunDirectoryError(CLEnvError, ValueError):
    """An output directory holds another run (or nothing to resume)."""


class ResultFileError(CLEnvError, ValueError):
    """A ``result.json`` that does not parse or is not a cl-env result."""


# --------------------------------------------------------------------------- files
def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(_finite(obj), indent=2, allow_nan=False, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_bytes_atomic`, UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one, never a
    part (a uniquely named temporary in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None or exc.filename == str(tmp):  # name the file the caller asked for
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


MAX_RESULT_BYTES = 256 * 2**20  # a run of 2,000 tasks: its three accuracy matrices take about 150 MB of text


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``.

    Raises:
        ResultFileError: The file is empty, does not parse, or is not a JSON object.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:  # at most MAX_RESULT_BYTES + 1: a link to /dev/zero ends too
            raw = f.read(MAX_RESULT_BYTES + 1)
        if len(raw) > MAX_RESULT_BYTES:
            raise ResultFileError(f"{path}: larger than {MAX_RESULT_BYTES:,} bytes, not a result cl-env writes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot be read ({exc})") from None
    if not text.strip():
        raise ResultFileError(f"{path}: empty file (a run killed while writing it, by an older cl-env)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ResultFileError(f"{path}: JSON nested too deeply to be a cl-env file") from None
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data
