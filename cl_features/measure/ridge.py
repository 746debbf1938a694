"""Ridge regression in float64 NumPy, closed form: the one fit behind every ridge probe and ridge R^2 here.

`fit` standardises the features with the fitting rows' mean and std (plus `eps`; a constant feature is divided
by 1), centres the targets (the intercept is their mean, not penalised) and minimises

    (1 / n) ||Y - X W||^2 + l2 ||W||^2,

i.e. sklearn's Ridge(alpha=l2 * n). `solve` is the bare closed form, for callers that build their own design.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def solve(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """argmin_W ||y - x W||^2 + lam ||W||^2 for x: [n, p], y: [n, k] (or [n]), float64.

    lam = 0 gives the minimum-norm least-squares fit. With more features than rows the same solution comes
    from the [n, n] system (x' (x x' + lam I)^-1 y) instead of the [p, p] one.
    """
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
