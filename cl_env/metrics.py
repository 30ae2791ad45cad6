"""Continual-learning metrics as pure functions over an accuracy matrix.

``R[i, j]`` is the test accuracy (a fraction in [0, 1]) on task ``j`` after training through task
``i``; ``R`` is ``T x T``. Denominators follow the papers, not GEM's code: GEM's ``metrics.py``
divides BWT and FWT by ``T``, the GEM paper (eq. in §4) by ``T - 1``; we use ``T - 1``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _matrix(R: ArrayLike) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square T x T with T >= 1, got shape {R.shape}")
    return R


def retained_accuracy(R: ArrayLike) -> float:
    """RA / ACC: mean over all tasks j of ``R[T-1, j]`` (accuracy after the whole stream)."""
    return float(_matrix(R)[-1].mean())


def learning_accuracy(R: ArrayLike) -> float:
    """LA (MER / La-MAML): mean of the diagonal, each task's accuracy right after learning it."""
    return float(np.diag(_matrix(R)).mean())


def bti(R: ArrayLike) -> float:
    """BTI, backward transfer and interference as MER and La-MAML report it: ``RA - LA`` over all T tasks."""
    return retained_accuracy(R) - learning_accuracy(R)


def backward_transfer(R: ArrayLike) -> float:
    """BWT (GEM, Lopez-Paz & Ranzato 2017): ``1/(T-1) * sum_{j<T-1} (R[T-1, j] - R[j, j])``.

    Uses the paper's ``T - 1`` denominator (GEM's code divides by ``T``). 0 for a single task.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T == 1:
        return 0.0
    return float((R[-1, :-1] - np.diag(R)[:-1]).sum() / (T - 1))


def forward_transfer(R: ArrayLike, baseline: ArrayLike) -> float:
    """FWT (GEM): ``1/(T-1) * sum_{j>=1} (R[j-1, j] - b_j)``.

    Args:
        R: The accuracy matrix.
        baseline: ``b_j``, the accuracy of the randomly initialised model on each task's test set.
    """
    R = _matrix(R)
    b = np.asarray(baseline, dtype=np.float64)
    T = R.shape[0]
    if b.shape != (T,):
        raise ValueError(f"baseline must have one accuracy per task, shape ({T},), got {b.shape}")
    if T == 1:
        return 0.0
    return float((np.diag(R, k=1) - b[1:]).sum() / (T - 1))


def forgetting(R: ArrayLike) -> float:
    """Average forgetting (Chaudhry et al. 2018; ARM eq. 11-12).

    ``f_j = max_{l < T-1} R[l, j] - R[T-1, j]`` for each ``j < T-1``, averaged over those ``j``.
    0 for a single task.
    """
    R = _matrix(R)
    T = R.shape[0]
    if T == 1:
        return 0.0
    best = R[:-1, :-1].max(axis=0)
    return float((best - R[-1, :-1]).mean())


def summary(R: ArrayLike, baseline: ArrayLike | None = None) -> dict[str, float | None]:
    """Every metric above in one dict (``forward_transfer`` is None without a baseline)."""
    return {
        "retained_accuracy": retained_accuracy(R),
        "learning_accuracy": learning_accuracy(R),
        "bti": bti(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": None if baseline is None else forward_transfer(R, baseline),
        "forgetting": forgetting(R),
    }


def frechet_distance(features_a: ArrayLike, features_b: ArrayLike) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (LGM eq. 20; Heusel et al.).

    ``||m_a - m_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})`` with means and covariances over the
    *whole* sets (rows are examples), not averaged over minibatches (the reference code's per-batch
    mean is biased). Needs at least 2 rows in each set.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"features must be (N, D) arrays with N >= 2 and equal D, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("features hold NaN or inf (a diverged model?): the Fréchet distance is undefined")
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (C_a C_b)^{1/2} = Tr (C_a^{1/2} C_b C_a^{1/2})^{1/2}: symmetric PSD, so eigh is exact and stable
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ cb @ root_a)
    tr_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((ma - mb) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2.0 * tr_covmean)
