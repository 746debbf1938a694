"""Sparse local statistics of images (docs/theory.md, section 7): a fixed patch dictionary (Coates & Ng 2011),
learnt by spherical k-means on contrast-normalised, ZCA-whitened patches, and its soft-thresholded responses pooled
over positions. Images are [N, H, W, 3] float in [0, 1], processed in NumPy in chunks of `chunk_size` images.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cl_features.measure.image_stats import check_images, check_positive_int, chunks

SPARSE_STATS = ("patch_codes_max", "patch_codes_mean")


@dataclasses.dataclass(frozen=True)
class PatchDictionary:
    """A fixed dictionary of whitened image patches. patch_dim = patch_size * patch_size * 3.

    A patch (flattened in (row, col, channel) order) is first contrast-normalised,
    p <- (p - mean(p)) / sqrt(var(p) + contrast_eps), then whitened, z = whitening @ (p - mean), and its
    response to atom j is <atoms[j], z>.

    mean: [patch_dim]; whitening: [patch_dim, patch_dim] (ZCA, symmetric); atoms: [n_atoms, patch_dim],
    unit norm in whitened space.
    """

    mean: np.ndarray
    whitening: np.ndarray
    atoms: np.ndarray
    patch_size: int
    contrast_eps: float = 10.0 / 255.0**2

    def __post_init__(self):
        d = 3 * check_positive_int(self.patch_size, "patch_size") ** 2
        arrays = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("mean", "whitening", "atoms")}
        for name, shape in (("mean", (d,)), ("whitening", (d, d))):
            if arrays[name].shape != shape:
                raise ValueError(f"{name} must be {list(shape)} (patch_dim={d}); got shape {arrays[name].shape}")
        atoms = arrays["atoms"]
        if atoms.ndim != 2 or atoms.shape[1] != d or atoms.shape[0] < 1:
            raise ValueError(f"atoms must be [n_atoms >= 1, patch_dim={d}]; got shape {atoms.shape}")
        if not self.contrast_eps > 0:
            raise ValueError(f"contrast_eps must be > 0; got {self.contrast_eps}")
        for name, value in arrays.items():
            object.__setattr__(self, name, value)

    @property
    def n_atoms(self) -> int:
        return self.atoms.shape[0]

    @property
    def patch_dim(self) -> int:
        return self.atoms.shape[1]


def extract_patches(images, patch_size: int, stride: int = 1) -> np.ndarray:
    """images: [N, H, W, 3] -> [N, n_pos, patch_size * patch_size * 3], all patches on a `stride` grid.

    Positions are row-major; each patch is flattened in (row, col, channel) order.
    """
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C]; got shape {x.shape}")
    p = check_positive_int(patch_size, "patch_size")
    stride = check_positive_int(stride, "stride")
    n, h, w, c = x.shape
    if p > min(h, w):
        raise ValueError(f"patch_size must be <= min(H, W) = {min(h, w)}; got {p}")
    win = np.lib.stride_tricks.sliding_window_view(x, (p, p), axis=(1, 2))[:, ::stride, ::stride]
    # win: [N, nh, nw, 3, p, p] -> [N, nh * nw, p * p * 3]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(n, -1, p * p * c)


def normalise_patches(patches: np.ndarray, contrast_eps: float) -> np.ndarray:
    """patches: [..., patch_dim] -> same shape, (p - mean(p)) / sqrt(var(p) + contrast_eps) per patch."""
    mu = patches.mean(axis=-1, keepdims=True)
    var = patches.var(axis=-1, keepdims=True)
    return (patches - mu) / np.sqrt(var + contrast_eps)


def _sample_patches(x: np.ndarray, patch_size: int, n_patches: int, rng: np.random.Generator) -> np.ndarray:
    """x: [N, H, W, 3] -> [n_patches, patch_dim] float64 at uniform random (image, row, col)."""
    n, h, w, _ = x.shape
    p = patch_size
    idx = rng.integers(0, n, n_patches)
    rows = rng.integers(0, h - p + 1, n_patches)
    cols = rng.integers(0, w - p + 1, n_patches)
    d = np.arange(p)
    patches = x[idx[:, None, None], rows[:, None, None] + d[None, :, None], cols[:, None, None] + d[None, None, :]]
    return patches.reshape(n_patches, -1).astype(np.float64)


def spherical_kmeans(data, n_atoms: int, *, iters: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (Dhillon & Modha 2001): unit atoms D: [n_atoms, d] maximising sum_i max_j <D_j, x_i>.

    data: [n, d]. Points go to the atom of largest signed projection, atoms to the normalised sum of their
    points; greedy spherical k-means++ init (as sklearn's); an empty atom moves to the worst-explained point.
    Returns (atoms, loss: [iters + 1]), loss = mean_i (||x_i|| - max_j <D_j, x_i>) (non-increasing), the first
    entry after initialisation.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"data must be [n >= 1, d]; got shape {x.shape}")
    n_atoms = check_positive_int(n_atoms, "n_atoms")
    iters = check_positive_int(iters, "iters", minimum=0)
    norms = np.linalg.norm(x, axis=1)
    if np.count_nonzero(norms > 0) < n_atoms:
        raise ValueError(f"n_atoms={n_atoms} exceeds the {np.count_nonzero(norms > 0)} non-zero data points")
    rng = np.random.default_rng(seed)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]

    # Greedy k-means++: of `trials` points drawn ~ D^2 (squared distance to the nearest atom ray), keep the one
    # that most lowers sum D^2.
    def dist2(best):  # best: [n, ...] -> [n, ...]
        sq = norms.reshape((-1,) + (1,) * (best.ndim - 1)) ** 2
        return np.maximum(sq - np.maximum(best, 0.0) ** 2, 0.0)

    trials = 2 + int(np.log(n_atoms))
    atoms = np.empty((n_atoms, x.shape[1]))
    atoms[0] = unit[rng.choice(np.flatnonzero(norms > 0))]
    best = x @ atoms[0]
    for j in range(1, n_atoms):
        resid = dist2(best)
        total = resid.sum()
        if total > 0:
            cands = rng.choice(x.shape[0], size=trials, p=resid / total)
        else:
            cands = rng.choice(np.flatnonzero(norms > 0), size=trials)
        new_best = np.maximum(best[:, None], x @ unit[cands].T)  # [n, trials]
        pick = int(np.argmin(dist2(new_best).sum(axis=0)))
        atoms[j] = unit[cands[pick]]
        best = new_best[:, pick]

    losses = [float(np.mean(norms - best))]
    for _ in range(iters):
        proj = x @ atoms.T  # [n, n_atoms]
        assign = np.argmax(proj, axis=1)
        sums = np.zeros_like(atoms)
        for j in np.unique(assign):
            sums[j] = x[assign == j].sum(axis=0)
        sum_norms = np.linalg.norm(sums, axis=1)
        # A cluster whose sum is zero keeps its atom (or takes a worst-explained point if it is empty).
        new = np.where(sum_norms[:, None] > 0, sums / np.where(sum_norms > 0, sum_norms, 1.0)[:, None], atoms)
        empty = np.flatnonzero(np.bincount(assign, minlength=n_atoms) == 0)
        if empty.size:
            resid = norms - proj[np.arange(x.shape[0]), assign]
            worst = np.argsort(-resid, kind="stable")[: empty.size]
            new[empty] = unit[worst]
        atoms = new
        losses.append(float(np.mean(norms - np.max(x @ atoms.T, axis=1))))
    return atoms, np.array(losses)


def fit_patch_dictionary(
    images,
    *,
    patch_size: int = 6,
    n_atoms: int = 64,
    n_patches: int = 20000,
    seed: int = 0,
    iters: int = 30,
    zca_eps: float = 0.1,
    contrast_eps: float = 10.0 / 255.0**2,
) -> PatchDictionary:
    """A PatchDictionary from `n_patches` random patches of images: [N, H, W, 3]: contrast-normalised
    (`contrast_eps`: Coates & Ng's +10 on 0..255 variances), ZCA-whitened with U diag(1 / sqrt(s + zca_eps)) U^T
    of the patch covariance U diag(s) U^T, clustered by `spherical_kmeans`. Same seed, same dictionary."""
    x = check_images(images)
    patch_size = check_positive_int(patch_size, "patch_size")
    n_atoms = check_positive_int(n_atoms, "n_atoms")
    n_patches = check_positive_int(n_patches, "n_patches", minimum=2)
    iters = check_positive_int(iters, "iters", minimum=0)
    if patch_size > min(x.shape[1], x.shape[2]):
        raise ValueError(f"patch_size must be <= min(H, W) = {min(x.shape[1], x.shape[2])}; got {patch_size}")
    if n_patches < n_atoms:
        raise ValueError(f"n_patches must be >= n_atoms={n_atoms}; got {n_patches}")
    if not zca_eps > 0:
        raise ValueError(f"zca_eps must be > 0; got {zca_eps}")
    if not contrast_eps > 0:
        raise ValueError(f"contrast_eps must be > 0; got {contrast_eps}")
    rng = np.random.default_rng(seed)
    patches = normalise_patches(_sample_patches(x, patch_size, n_patches, rng), contrast_eps)
    mean = patches.mean(axis=0)
    centred = patches - mean
    cov = centred.T @ centred / n_patches
    s, u = np.linalg.eigh(cov)
    whitening = (u * (1.0 / np.sqrt(np.maximum(s, 0.0) + zca_eps))) @ u.T
    atoms, _ = spherical_kmeans(centred @ whitening, n_atoms, iters=iters, seed=int(rng.integers(2**31)))
    return PatchDictionary(
        mean=mean, whitening=whitening, atoms=atoms, patch_size=patch_size, contrast_eps=contrast_eps
    )


def sparse_statistics(
    images, dictionary: PatchDictionary, *, threshold: float = 1.0, stride: int = 1, chunk_size: int = 128
) -> dict[str, np.ndarray]:
    """images: [N, H, W, 3] -> {'patch_codes_max': [N, n_atoms], 'patch_codes_mean': [N, n_atoms]} float64.

    Every patch on a `stride` grid is contrast-normalised and whitened as in `PatchDictionary`; its code is
    max(0, <atom_j, z> - threshold) (Coates & Ng 2011's "natural encoder", one polarity), max- and mean-pooled
    over positions. threshold 1.0 leaves about 8% of responses non-zero for 64 atoms on 32x32 photo crops.
    """
    x = check_images(images)
    d = dictionary
    if not isinstance(d, PatchDictionary):
        raise ValueError(f"dictionary must be a PatchDictionary; got {type(d).__name__}")
    if not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0; got {threshold}")
    stride, chunk_size = check_positive_int(stride, "stride"), check_positive_int(chunk_size, "chunk_size")
    if d.patch_size > min(x.shape[1], x.shape[2]):
        raise ValueError(f"dictionary.patch_size={d.patch_size} exceeds the image size {x.shape[1:3]}")
    # <atom, W (p - mean)> = p @ proj - offset, with proj = (atoms W)^T: [patch_dim, n_atoms].
    proj = (d.atoms @ d.whitening).T
    offset = d.mean @ proj
    proj32, offset32, threshold32 = proj.astype(np.float32), offset.astype(np.float32), np.float32(float(threshold))
    n = x.shape[0]
    out = {"patch_codes_max": np.empty((n, d.n_atoms)), "patch_codes_mean": np.empty((n, d.n_atoms))}
    for sl in chunks(n, chunk_size):
        patches = normalise_patches(
            extract_patches(x[sl].astype(np.float32), d.patch_size, stride), np.float32(d.contrast_eps)
        )
        codes = np.maximum(patches @ proj32 - offset32 - threshold32, 0.0)  # [n, n_pos, n_atoms]
        out["patch_codes_max"][sl] = codes.max(axis=1)
        out["patch_codes_mean"][sl] = codes.mean(axis=1, dtype=np.float64)
    return out
