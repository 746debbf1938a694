"""Dense, global statistics of images (docs/theory.md, section 7): mean colour, colour histogram, low-frequency DCT
magnitudes of the luminance. Images are [N, H, W, 3] float in [0, 1], processed in NumPy in chunks of `chunk_size`.
"""

from __future__ import annotations

import numpy as np

from cl_features.augment.color import LUMA_WEIGHTS

DENSE_STATS = ("mean_colour", "colour_histogram", "low_frequency_energy")
# Rec. 601 luma weights.
_LUMA = np.array(LUMA_WEIGHTS)
# Slack for values a hair outside [0, 1] from float round-off in augmentations.
_RANGE_TOL = 1e-4


def check_images(images, name: str = "images") -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be [N, H, W, 3]; got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{name} must have N, H, W >= 1; got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating point in [0, 1]; got dtype {x.dtype}")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(f"{name} must hold finite values in [0, 1]; got range [{lo}, {hi}]")
    return x


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def chunks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def mean_colour(images) -> np.ndarray:
    """images: [N, H, W, 3] -> [N, 3] float64, the mean of each channel over all pixels."""
    x = check_images(images)
    return x.mean(axis=(1, 2), dtype=np.float64)


def colour_histogram(images, bins: int = 8, *, chunk_size: int = 256) -> np.ndarray:
    """images: [N, H, W, 3] -> [N, 3 * bins] float64 ([R bins, G bins, B bins]), soft histograms summing to 1.

    Bin j has centre c_j = (j + 0.5) / bins; a value between c_j and c_{j+1} splits linearly between the two
    bins (values beyond the edge centres go to the edge bin), so the histogram's mean equals the channel mean.
    """
    x = check_images(images)
    bins = check_positive_int(bins, "bins", minimum=2)
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    n, h, w, _ = x.shape
    out = np.empty((n, 3, bins))
    for sl in chunks(n, chunk_size):
        t = np.clip(x[sl].astype(np.float32) * bins - 0.5, 0.0, bins - 1.0)  # bin coordinate
        for j in range(bins):
            weight = np.maximum(0.0, 1.0 - np.abs(t - j))
            out[sl, :, j] = weight.sum(axis=(1, 2), dtype=np.float64) / (h * w)
    return out.reshape(n, 3 * bins)


def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C: [size, size]; C @ v is scipy.fft.dct(v, norm='ortho')."""
    k = np.arange(size)[:, None]
    i = np.arange(size)[None, :]
    c = np.sqrt(2.0 / size) * np.cos(np.pi * (2 * i + 1) * k / (2 * size))
    c[0] /= np.sqrt(2.0)
    return c


def low_frequency_energy(images, k: int = 4, *, chunk_size: int = 256) -> np.ndarray:
    """images: [N, H, W, 3] -> [N, k * k] float64, |scipy.fft.dctn(Y, norm='ortho')[u, v]| for u, v < k (row-major)
    of the luminance Y = 0.299 R + 0.587 G + 0.114 B, the DC term included."""
    x = check_images(images)
    k = check_positive_int(k, "k")
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    n, h, w, _ = x.shape
    if k > min(h, w):
        raise ValueError(f"k must be <= min(H, W) = {min(h, w)}; got {k}")
    ch, cw = _dct_matrix(h)[:k], _dct_matrix(w)[:k]
    out = np.empty((n, k, k))
    for sl in chunks(n, chunk_size):
        lum = x[sl].astype(np.float64) @ _LUMA  # [n, H, W]
        out[sl] = np.abs(np.einsum("uh,nhw,vw->nuv", ch, lum, cw, optimize=True))
    return out.reshape(n, k * k)


def dense_statistics(images, *, bins: int = 8, k: int = 4, chunk_size: int = 256) -> dict[str, np.ndarray]:
    """images: [N, H, W, 3] -> {'mean_colour': [N, 3], 'colour_histogram': [N, 3*bins],
    'low_frequency_energy': [N, k*k]}."""
    x = check_images(images)
    return {
        "mean_colour": mean_colour(x),
        "colour_histogram": colour_histogram(x, bins, chunk_size=chunk_size),
        "low_frequency_energy": low_frequency_energy(x, k, chunk_size=chunk_size),
    }
