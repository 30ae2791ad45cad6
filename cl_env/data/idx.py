"""Reading and writing the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed).

The format (LeCun et al.): two zero bytes, a type byte (0x08 = unsigned byte), a byte holding the
number of dimensions, one big-endian int32 per dimension, then the data in C order.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_UBYTE = 0x08


class IDXFormatError(ValueError):
    """The bytes are not a valid unsigned-byte IDX file."""


def parse_idx(data: bytes) -> np.ndarray:
    """Decode the bytes of an unsigned-byte IDX file.

    Args:
        data: The whole file, decompressed.

    Returns:
        A read-only ``uint8`` array of the declared shape.

    Raises:
        IDXFormatError: Bad magic number, type or size (the message says expected vs found).
    """
    if len(data) < 4:
        raise IDXFormatError(f"file has {len(data)} bytes, expected at least a 4-byte header")
    if data[0] != 0 or data[1] != 0 or data[2] != _UBYTE:
        raise IDXFormatError(
            f"magic bytes {data[:3].hex()} found, expected 000008 (unsigned-byte IDX)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"truncated header: {len(data)} bytes for {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise IDXFormatError(
            f"{len(data) - header} data bytes found, expected {expected} for shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_bytes(path: str | Path) -> bytes:
    """The decompressed bytes of an IDX file (a name ending in ``.gz`` is gunzipped)."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IDXFormatError(f"not a valid gzip file ({exc})") from exc
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file; a name ending in ``.gz`` is decompressed first."""
    return parse_idx(read_idx_bytes(path))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a ``uint8`` array as an IDX file (gzip-compressed if the name ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UBYTE, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return path
