"""A real packed bit store: fixed-width rows of unsigned fields, contiguous in a byte array.

Row ``i`` occupies bits ``[i * width, (i + 1) * width)`` of one ``uint8`` array (bit ``j`` of
the stream is bit ``j % 8`` of byte ``j // 8``), so ``n`` rows of ``width`` bits hold exactly
``ceil(n * width / 8)`` bytes: no per-row padding. A row is a sequence of fields (e.g. ``c`` code
variables of ``ceil(log2 l)`` bits, then the label, then the task id).
"""

from __future__ import annotations

import numpy as np


def _layout(widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each bit of a row: the field it belongs to and its position inside that field."""
    widths = np.asarray(widths, dtype=np.int64)
    field = np.repeat(np.arange(len(widths)), widths)
    shift = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
    return field, shift


def field_bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Little-endian bits of each field: ``(n, sum(widths))`` uint8 in {0, 1} (one vectorised
    gather, no loop over fields: rows of hundreds of pixels pack as fast as a few codes)."""
    values = np.asarray(values, dtype=np.int64)
    field, shift = _layout(widths)
    return ((values[:, field] >> shift) & 1).astype(np.uint8)


def bits_to_fields(bits: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`field_bits`."""
    widths = np.asarray(widths, dtype=np.int64)
    out = np.zeros((len(bits), len(widths)), dtype=np.int64)
    field, shift = _layout(widths)
    if len(field):
        weighted = bits.astype(np.int64) << shift
        starts = np.cumsum(widths) - widths
        nonzero = widths > 0
        out[:, nonzero] = np.add.reduceat(weighted, starts[nonzero], axis=1)
    return out


class BitStore:
    """``capacity`` rows of fields with the given bit ``widths``, packed contiguously.

    Args:
        capacity: Rows held at most.
        widths: Bits of each field of a row.
    """

    def __init__(self, capacity: int, widths: list[int] | np.ndarray):
        self.widths = np.asarray(widths, dtype=np.int64)
        if (self.widths < 0).any() or (self.widths > 62).any():
            raise ValueError(f"field widths must be in [0, 62], got {self.widths.tolist()}")
        self.width = int(self.widths.sum())
        self.capacity = int(capacity)
        self.data = np.zeros(-(-self.capacity * self.width // 8), dtype=np.uint8)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def _positions(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.capacity):
            raise IndexError(f"rows must be in [0, {self.capacity}), got {rows.min()}..{rows.max()}")
        return rows[:, None] * self.width + np.arange(self.width)

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        """Write ``values`` (``(n, n_fields)`` ints) into ``rows`` (distinct)."""
        values = np.asarray(values, dtype=np.int64)
        if values.shape != (len(rows), len(self.widths)):
            raise ValueError(f"values must be ({len(rows)}, {len(self.widths)}), got {values.shape}")
        limit = (np.int64(1) << self.widths)
        if (values < 0).any() or (values >= limit).any():
            raise ValueError("a value does not fit its field's width")
        pos = self._positions(rows).ravel()
        bits = field_bits(values, self.widths).ravel()
        byte, shift = pos >> 3, (pos & 7).astype(np.uint8)
        np.bitwise_and.at(self.data, byte, ~(np.uint8(1) << shift))
        np.bitwise_or.at(self.data, byte, (bits << shift).astype(np.uint8))

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The fields of ``rows``: ``(n, n_fields)`` int64."""
        pos = self._positions(rows)
        bits = (self.data[pos >> 3] >> (pos & 7).astype(np.uint8)) & 1
        return bits_to_fields(bits, self.widths)
