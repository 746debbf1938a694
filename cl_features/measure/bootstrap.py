"""Percentile bootstrap over images for cross-view correlations (docs/decoupling.md, "Uncertainty").

A resample draws N of the N images with replacement, written as counts [B, N] (row b: how often each image is
drawn). Every number of a table is recomputed on the same resamples, so their replicates are paired: the
replicates of an average of numbers are the average of their replicates, also across seeds measured on the same
images. The 95% interval is the 2.5% and 97.5% percentile of the replicates.
"""

from __future__ import annotations

import numpy as np


def resample_counts(n: int, num: int, seed: int) -> np.ndarray:
    """[num, n] float64 counts: each row a multinomial draw of n images out of n (a bootstrap resample)."""
    if n < 2 or num < 1:
        raise ValueError(f"need n >= 2 images and num >= 1 resamples; got n={n}, num={num}")
    rng = np.random.default_rng([seed, n])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=num).astype(np.float64)


def correlation_replicates(a, b, counts: np.ndarray) -> np.ndarray:
    """Mean over dimensions of the per-dimension Pearson correlation of a and b, once per resample.

    a, b: [N, k] (or [N]) statistics of the two views, row i a positive pair; counts: [B, N]. Returns [B]; a
    dimension constant within a resample is left out of that resample's mean (NaN if every one is).
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape != b.shape or counts.shape[1] != a.shape[0]:
        raise ValueError(f"a, b must be [N, k] alike and counts [B, N]; got {a.shape}, {b.shape}, {counts.shape}")
    a, b = a - a.mean(0), b - b.mean(0)  # centred once: the resampled moments below lose no precision
    w = counts / counts.sum(1, keepdims=True)
    ma, mb = w @ a, w @ b
    cov = w @ (a * b) - ma * mb
    var = np.maximum(w @ (a * a) - ma * ma, 0.0) * np.maximum(w @ (b * b) - mb * mb, 0.0)
    scale = np.maximum(np.abs(a).max(0), np.abs(b).max(0)) ** 4
    ok = var > 1e-18 * scale
    corr = np.where(ok, cov / np.sqrt(np.where(ok, var, 1.0)), np.nan)
    kept = ok.sum(1)
    return np.where(kept > 0, np.nansum(np.clip(corr, -1, 1), 1) / np.maximum(kept, 1), np.nan)


def interval(replicates, level: float = 0.95) -> list[float]:
    """[low, high]: the (1 - level) / 2 and (1 + level) / 2 percentiles of the finite replicates."""
    r = np.asarray(replicates, np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(r, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]
