"""The packed bit store: exact size, round trips, neighbours untouched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory.bitstore import BitStore


def test_size_is_exact_without_row_padding():
    store = BitStore(3000, [2] * 102 + [4])  # 102 variables of 4 categories + a 4-bit label
    assert store.width == 208 and store.nbytes == 3000 * 208 // 8
    odd = BitStore(7, [3, 3, 1])  # 7 bits a row: rows straddle bytes
    assert odd.nbytes == 7  # ceil(49 / 8)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=6), st.integers(1, 40), st.integers(0, 10_000))
def test_round_trip_and_neighbours(widths, capacity, seed):
    rng = np.random.default_rng(seed)
    store = BitStore(capacity, widths)
    limit = np.int64(1) << np.asarray(widths)
    truth = rng.integers(0, limit, size=(capacity, len(widths)))
    store.write(np.arange(capacity), truth)
    assert np.array_equal(store.read(np.arange(capacity)), truth)
    rows = rng.permutation(capacity)[: max(1, capacity // 3)]
    new = rng.integers(0, limit, size=(len(rows), len(widths)))
    store.write(rows, new)
    truth[rows] = new
    assert np.array_equal(store.read(np.arange(capacity)), truth)


def test_bad_values():
    store = BitStore(4, [2, 3])
    with pytest.raises(ValueError, match="does not fit"):
        store.write(np.array([0]), np.array([[4, 0]]))
    with pytest.raises(IndexError, match=r"rows must be in \[0, 4\), got 4\.\.4"):
        store.read(np.array([4]))
    with pytest.raises(IndexError, match=r"rows must be in \[0, 4\), got -1\.\.0"):
        store.read(np.array([-1, 0]))  # numpy would wrap -1 to the last row silently
    with pytest.raises(IndexError, match=r"rows must be in \[0, 4\)"):
        store.write(np.array([3, 4]), np.array([[0, 0], [1, 1]]))
    with pytest.raises(ValueError, match=r"values must be \(1, 2\)"):
        store.write(np.array([0]), np.array([[1, 1, 1]]))
    with pytest.raises(ValueError, match="does not fit"):
        store.write(np.array([0]), np.array([[0, -1]]))


def test_the_packed_layout_is_rows_of_little_endian_fields_back_to_back():
    """The layout the storage accounting relies on: row r's field bits at r * width + k, bit p in
    byte p // 8 at position p % 8 (so 4 rows of 3 bits take exactly 2 bytes)."""
    store = BitStore(4, [3])
    assert store.nbytes == 2
    store.write(np.array([1]), np.array([[0b101]]))  # positions 3 and 5
    assert store.data.tolist() == [0b00101000, 0]
    store.write(np.array([2]), np.array([[0b111]]))  # positions 6, 7, 8
    assert store.data.tolist() == [0b11101000, 0b00000001]
    two = BitStore(3, [2, 5])  # 7 bits a row: row 1's second field starts at bit 9
    two.write(np.array([1]), np.array([[0, 1]]))
    assert two.data.tolist() == [0, 0b00000010, 0]


def test_field_widths_are_bounded():
    BitStore(2, [62, 0])  # 62 bits is the widest field (values fit int64 shifts)
    for widths in ([63], [-1], [4, 63]):
        with pytest.raises(ValueError, match=r"field widths must be in \[0, 62\]"):
            BitStore(2, widths)
