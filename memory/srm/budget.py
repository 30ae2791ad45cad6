"""SRM's code size and the latent size a budget allows (Riemer et al., *Scalable Recollections*,
appendix "binary representation", eq. 4 and eq. 5)."""

from __future__ import annotations

import math

from memory.base import MemorySpec, budget_bits
from memory.nets.discrete_vae import vae_parameters


def code_bits(c: int, l: int) -> int:  # noqa: E741
    """``k = c * ceil(log2 l)`` bits of one code (SRM appendix)."""
    return c * max(1, math.ceil(math.log2(l)))


def latent_for_budget(budget: float, spec: MemorySpec, items: int, categories: int,
                      policy: str = "reservoir", total: bool = False) -> int:
    """The number of variables ``c`` of ``categories`` categories that SRM eq. 4 allows.

    Eq. 4: maximise the capacity ``C_ve = c log2 l`` subject to ``rho * S_sbe <= gamma / N``, i.e.
    ``items * (k + label and task bits) <= budget bits``. With ``total=True``, eq. 5: the
    autoencoder's parameters (32 bits each) count against the same budget, and ``c`` is the
    largest that fits with them.
    """
    if items < 1:
        raise ValueError(f"items must be >= 1, got {items}")
    if categories < 2:
        raise ValueError(f"categories must be >= 2, got {categories}")
    extra = spec.label_bits + (spec.task_bits if policy == "reservoir" else 0)
    per_var = max(1, math.ceil(math.log2(categories)))
    bits = budget_bits(budget, spec)
    c = (bits // items - extra) // per_var
    if total:
        # eq. 5 exactly: the largest c whose codes and 32-bit autoencoder fit. |theta|(c, l) is
        # arithmetic (vae_parameters) and not monotone in c (a linear layer appears when c*l is
        # not a multiple of 4), so every c from eq. 4's bound down is checked until one fits.
        while c >= 1 and items * (c * per_var + extra) + 32 * vae_parameters(spec.image_shape, c, categories) > bits:
            c -= 1
    if c < 1:
        raise ValueError(
            f"a budget of {budget} examples cannot hold {items} items of even one variable of "
            f"{categories} categories plus {extra} label/task bits; lower items or raise the budget")
    return int(c)
