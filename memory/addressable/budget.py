"""The addressable memories' storage (Deng & Russakovsky, *Remember the Past*, eq. 4).

Bases and addressing are 32-bit floats, and with ``K`` classes, ``n`` bases and ``ipc`` images per
class of budget, the rows of addressing per class are
``floor((ipc * HWC * K - n * HWC / ds^2) / (K * n))``.
"""

from __future__ import annotations

import math

FLOAT_BITS = 32


def rows_per_class(ipc: float, image_shape: tuple[int, int, int], n_classes: int, n_bases: int,
                   ds: int = 2) -> int:
    """Addressing rows per class that fit ``ipc`` float images per class (eq. 4, reference formula).

    ``floor((ipc * HWC * K - n * HWC / ds^2) / (K * n))``; e.g. CIFAR-10, ipc 1, 16 bases, ds 2
    gives 115. Raises when the bases alone exceed the budget.
    """
    c, h, w = image_shape
    hwc = c * h * w
    base_floats = n_bases * c * math.ceil(h / ds) * math.ceil(w / ds)
    rows = math.floor((ipc * hwc * n_classes - base_floats) / (n_classes * n_bases))
    if rows < 1:
        raise ValueError(f"{n_bases} bases at 1/{ds} resolution ({base_floats} floats) leave no room for "
                         f"addressing in {ipc} images per class x {n_classes} classes; use fewer bases "
                         f"(--set n_bases=...) or a larger budget")
    return rows


def floats_for(n_bases: int, rows: int, n_classes: int, image_shape: tuple[int, int, int], ds: int) -> int:
    c, h, w = image_shape
    return n_bases * c * math.ceil(h / ds) * math.ceil(w / ds) + rows * n_classes * n_bases
