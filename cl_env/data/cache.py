"""Caches of prepared data that verify themselves.

A cache file (``.npz``) holds its arrays and the SHA-256 of their contents. On every load the
hash is recomputed: a file that does not parse (a flipped bit makes ``zipfile.BadZipFile``), or
whose contents differ from its hash or from the content the caller expects (a pinned hash of the
real data), is rebuilt from the source with one line on stderr saying so, and never used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

HASH_KEY = "__sha256__"


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _say(message: str) -> None:
    print(f"cl-env: {message}", file=sys.stderr)


def _read(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def cached_arrays(path: Path, build: Callable[[], dict[str, np.ndarray]],
                  expected: str | None = None) -> dict[str, np.ndarray]:
    """The arrays cached at ``path``, or ``build()``'s (then cached, atomically).

    Args:
        path: The cache file.
        build: Prepares the arrays from the source.
        expected: The content hash the arrays must have (e.g. pinned for the real data); None
            accepts whatever ``build`` produces.
    """
    if path.is_file():
        problem = None
        try:
            data = _read(path)
            stored = str(data.pop(HASH_KEY, ""))
            actual = content_hash(data)
            if stored != actual:
                problem = "its contents do not match its hash"
            elif expected is not None and actual != expected:
                problem = "its contents are not the expected data"
            else:
                return data
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            problem = f"it does not parse ({type(exc).__name__}: {exc})"
        _say(f"rebuilt the cache {path}: {problem}")
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **data, **{HASH_KEY: np.array(content_hash(data))})
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder: work without a cache
    return data
