"""Pearson correlation per dimension between two sets of per-example statistics, in float64 NumPy.

`a` and `b` are a statistic of the two views of the same N images (rows are positive pairs); inputs may be NumPy
or JAX arrays.
"""

from __future__ import annotations

import numpy as np

# A column whose values span less than this fraction of their magnitude is treated as constant.
_CONSTANT_RTOL = 1e-9


def as_2d(x, name: str) -> np.ndarray:
    """x: [N, k] or [N] -> [N, k] float64, checked finite."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, k] (or [N]); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return x


def constant_columns(x: np.ndarray) -> np.ndarray:
    """x: [N, k] -> [k] bool, True where the column is constant up to round-off."""
    return np.ptp(x, axis=0) <= _CONSTANT_RTOL * np.max(np.abs(x), axis=0)


def cross_view_correlation(a, b) -> np.ndarray:
    """a, b: [N, k] (or [N]), row i of each a positive pair -> [k] Pearson correlation over the N rows.

    A column constant in `a` or in `b` is NaN (no warning); `summary` leaves it out.
    """
    a, b = as_2d(a, "a"), as_2d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [N, k]; got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"a and b need N >= 2 rows (positive pairs); got N={a.shape[0]}")
    ac = a - a.mean(axis=0)
    bc = b - b.mean(axis=0)
    num = np.sum(ac * bc, axis=0)
    den = np.sqrt(np.sum(ac * ac, axis=0) * np.sum(bc * bc, axis=0))
    bad = constant_columns(a) | constant_columns(b) | (den == 0.0)
    corr = np.full(a.shape[1], np.nan)
    corr[~bad] = np.clip(num[~bad] / den[~bad], -1.0, 1.0)
    return corr


def summary(corr) -> dict[str, float | int]:
    """corr: [k] (NaN = undefined) -> {'mean', 'median', 'n_dims'} over the finite dims (NaN, NaN, 0 if none)."""
    corr = np.asarray(corr, dtype=np.float64).reshape(-1)
    finite = corr[np.isfinite(corr)]
    if finite.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "n_dims": 0}
    return {"mean": float(finite.mean()), "median": float(np.median(finite)), "n_dims": int(finite.size)}
