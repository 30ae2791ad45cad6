"""Minimum Sum of Squared Similarities, SRM's diverse sampling (appendix, Algorithm 3)."""

from __future__ import annotations

import numpy as np
import torch


def msss_select(x: torch.Tensor, m: int, gamma: float, rng: np.random.Generator) -> np.ndarray:
    """Minimum Sum of Squared Similarities (SRM appendix, Algorithm 3; Bouneffouf & Birol 2015).

    Picks ``m`` diverse rows of ``x`` (``(N, D)``): two at random, then repeatedly, from a random
    ``gamma`` fraction of the rows not yet picked, the one whose squared dot-product similarities
    to the picked rows sum lowest.

    Returns:
        The picked row indices, in the order picked.
    """
    n = len(x)
    if m >= n:
        return rng.permutation(n)
    flat = x.reshape(n, -1)
    picked = list(rng.choice(n, size=min(2, m), replace=False))
    sq = (flat @ flat[picked].T).pow(2).sum(1)  # running sum of squared similarities
    while len(picked) < m:
        rest = np.setdiff1d(np.arange(n), picked)
        t = rng.choice(rest, size=max(1, int(np.ceil(gamma * len(rest)))), replace=False)
        best = int(t[int(torch.argmin(sq[torch.from_numpy(t)]))])
        picked.append(best)
        sq = sq + (flat @ flat[best]).pow(2)
    return np.asarray(picked)
