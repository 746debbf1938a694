"""Ridge regression in float64 NumPy, closed form: the one solver behind every ridge probe and ridge R^2 here.

`fit` standardises the features with the fitting rows' mean and std (plus `eps`; a constant feature is divided
by 1), centres the targets (the intercept is their mean, not penalised) and minimises
(1 / n) ||Y - X W||^2 + l2 ||W||^2, i.e. sklearn's Ridge(alpha=l2 * n).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from cl_features.measure.correlation import as_2d, constant_columns


def solve(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """argmin_W ||y - x W||^2 + lam ||W||^2 for x: [n, p], y: [n, k] (or [n]), float64; lam = 0: min-norm lstsq."""
    n, p = x.shape
    if lam == 0.0:
        return np.linalg.lstsq(x, y, rcond=None)[0]
    if p <= n:
        return np.linalg.solve(x.T @ x + lam * np.eye(p), x.T @ y)
    return x.T @ np.linalg.solve(x @ x.T + lam * np.eye(n), y)


def standardiser(x: np.ndarray, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std + eps) over the rows of x: [n, p], float64; a std of 0 becomes 1."""
    x = np.asarray(x, np.float64)
    std = x.std(0) + eps
    return x.mean(0), np.where(std > 0, std, 1.0)


class Linear(NamedTuple):
    """A fitted linear map on standardised features: linear(x) = ((x - mean) / std) @ w + b."""

    mean: np.ndarray  # [p]
    std: np.ndarray  # [p]
    w: np.ndarray  # [p, k]
    b: np.ndarray  # [k]

    def __call__(self, x) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.std) @ self.w + self.b


def fit(x, y, l2: float, *, eps: float = 0.0) -> Linear:
    """Ridge from x: [n, p] to y: [n, k] (see the module docstring); l2 >= 0."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean, std = standardiser(x, eps)
    b = y.mean(0)
    return Linear(mean, std, solve((x - mean) / std, y - b, l2 * x.shape[0]), b)


def heldout_r2(
    features, targets, *, l2: float | Sequence[float] = 1e-3, train_frac: float = 0.7, seed: int = 0
) -> float:
    """Held-out R^2 of `fit` from features: [N, p] to targets: [N, k] (or [N]).

    Rows are shuffled with `seed`; the first round(train_frac * N) fit, the rest score. R^2 = 1 - SS_res / SS_tot
    (about the test mean), averaged over target dims; dims constant on the test split are left out (NaN when
    every dim is). With several l2 values, the one used has the best R^2 on a split (seed + 1) of the training
    rows alone, so the held-out rows never take part in the choice.
    """
    l2s = [float(v) for v in (l2 if isinstance(l2, (list, tuple)) else [l2])]
    if not l2s:
        raise ValueError("l2 must be a number or a non-empty list of numbers")
    x, y = as_2d(features, "features"), as_2d(targets, "targets")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"features and targets must have the same N rows; got {n} and {y.shape[0]}")
    if not all(np.isfinite(v) and v >= 0 for v in l2s):
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
    best = l2s[0]
    if len(l2s) > 1:
        scores = [heldout_r2(x[tr], y[tr], l2=v, train_frac=train_frac, seed=seed + 1) for v in l2s]
        best = l2s[int(np.nanargmax(scores))] if np.isfinite(scores).any() else l2s[0]
    pred = fit(x[tr], y[tr], best)(x[te])
    y_te = y[te]
    ss_res = np.sum((y_te - pred) ** 2, axis=0)
    ss_tot = np.sum((y_te - y_te.mean(axis=0)) ** 2, axis=0)
    keep = ~constant_columns(y_te) & (ss_tot > 0)
    if not np.any(keep):
        return float("nan")
    return float(np.mean(1.0 - ss_res[keep] / ss_tot[keep]))
