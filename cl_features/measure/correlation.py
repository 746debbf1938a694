"""How strongly two sets of per-example statistics agree: Pearson per dimension and held-out ridge R^2.

All maths in float64 NumPy; inputs may be NumPy or JAX arrays. These are the numbers behind the
"feature decoupling" measurements (docs/theory.md, section 7): `a` and `b` are a statistic of the two views
of the same N images (rows are positive pairs), or model features and a statistic to explain.
"""

from __future__ import annotations

import numpy as np

from cl_features.measure import ridge

__all__ = ["cross_view_correlation", "summary", "ridge_r2"]

# A column whose values span less than this fraction of their magnitude is treated as constant.
_CONSTANT_RTOL = 1e-9


def _as_2d_float64(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [N, k] (or [N]); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return x


def _constant_columns(x: np.ndarray) -> np.ndarray:
    """x: [N, k] -> [k] bool, True where the column is constant up to round-off."""
    span = np.ptp(x, axis=0)
    scale = np.max(np.abs(x), axis=0)
    return span <= _CONSTANT_RTOL * scale


def cross_view_correlation(a, b) -> np.ndarray:
    """Pearson correlation over the N rows, one per column.

    a, b: [N, k] (or [N]) statistics of the two views; row i of `a` and row i of `b` are a positive pair.
    Returns corr: [k] float64. A column that is constant in `a` or in `b` has no correlation: it is
    reported as NaN (no warning), and `summary` leaves it out.
    """
    a = _as_2d_float64(a, "a")
    b = _as_2d_float64(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape [N, k]; got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"a and b need N >= 2 rows (positive pairs); got N={a.shape[0]}")
    ac = a - a.mean(axis=0)
    bc = b - b.mean(axis=0)
    num = np.sum(ac * bc, axis=0)
    den = np.sqrt(np.sum(ac * ac, axis=0) * np.sum(bc * bc, axis=0))
    bad = _constant_columns(a) | _constant_columns(b) | (den == 0.0)
    corr = np.full(a.shape[1], np.nan)
    corr[~bad] = np.clip(num[~bad] / den[~bad], -1.0, 1.0)
    return corr


def summary(corr) -> dict[str, float | int]:
    """corr: [k] per-dimension values (NaN = undefined) -> {'mean', 'median', 'n_dims'} over finite dims.

    With no finite dimension, mean and median are NaN and n_dims is 0.
    """
    corr = np.asarray(corr, dtype=np.float64).reshape(-1)
    finite = corr[np.isfinite(corr)]
    if finite.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "n_dims": 0}
    return {"mean": float(finite.mean()), "median": float(np.median(finite)), "n_dims": int(finite.size)}


def ridge_r2(features, targets, *, l2: float = 1e-3, train_frac: float = 0.7, seed: int = 0) -> float:
    """Held-out R^2 of ridge regression from standardized features to targets.

    features: [N, p]; targets: [N, k] (or [N]). Rows are shuffled with `seed` and split into the first
    round(train_frac * N) for fitting and the rest for testing. Features are standardized with the training
    mean and std (constant features become 0); targets are centred with the training mean (the intercept).
    Weights minimise (1/n_train) ||Y - X W||^2 + l2 ||W||^2 (`ridge.fit`, closed form, float64; l2 = 0 gives
    the minimum-norm least-squares fit), i.e. sklearn's Ridge(alpha=l2 * n_train).
    Returns the test R^2 = 1 - SS_res / SS_tot (SS_tot about the test mean) averaged uniformly over target
    dims; dims constant on the test split are left out (NaN when every dim is).
    """
    x = _as_2d_float64(features, "features")
    y = _as_2d_float64(targets, "targets")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"features and targets must have the same N rows; got {n} and {y.shape[0]}")
    if not np.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0; got {l2}")
    if not 0.0 < train_frac < 1.0:
        raise ValueError(f"train_frac must be in (0, 1); got {train_frac}")
    n_train = int(round(train_frac * n))
    if n_train < 2 or n - n_train < 2:
        raise ValueError(
            f"train_frac={train_frac} with N={n} leaves {n_train} train / {n - n_train} test rows; need >= 2 each"
        )

    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[:n_train], perm[n_train:]
    pred = ridge.fit(x[tr], y[tr], l2)(x[te])
    y_te = y[te]
    ss_res = np.sum((y_te - pred) ** 2, axis=0)
    ss_tot = np.sum((y_te - y_te.mean(axis=0)) ** 2, axis=0)
    keep = ~_constant_columns(y_te) & (ss_tot > 0)
    if not np.any(keep):
        return float("nan")
    return float(np.mean(1.0 - ss_res[keep] / ss_tot[keep]))
