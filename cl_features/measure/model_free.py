"""Model-free feature decoupling per augmentation set (image_sets.VIEW_SETS): the cross-view Pearson correlation,
over N positive pairs drawn on device, of the dense statistics (`image_stats.dense_statistics`) and the sparse ones
(`patch_codes.sparse_statistics`) of the 'rgb' dictionary and/or the 'luminance' one (`luminance_images`).

Tables: {set_name: {'stats': {row: {'corr_mean', 'corr_median', 'n_dims'}}, 'dense_mean', 'sparse_mean': {kind},
'ratio': {kind: dense_mean / sparse_mean}, 'num_images'}}, row a dense statistic or '<sparse statistic>/<kind>'.
With bootstrap resamples (`counts`) also 'corr_mean_ci' per row, 'dense_mean_ci', 'sparse_mean_ci' {kind: [low,
high]} and 'replicates' {row, 'dense_mean', 'sparse_mean/<kind>': [B]}.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cl_features.augment import color, image_ops, image_sets
from cl_features.measure import bootstrap, correlation, image_stats, patch_codes
from cl_features.measure.image_stats import check_positive_int

DICTIONARY_KINDS = ("rgb", "luminance")
_LUMA = np.array(color.LUMA_WEIGHTS, np.float32)


def luminance_images(images) -> np.ndarray:
    """images: [N, H, W, 3] float in [0, 1] -> [N, H, W, 3] float32, Y = 0.299 R + 0.587 G + 0.114 B in
    every channel (so any RGB statistic of it is a statistic of the luminance alone)."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3]; got shape {x.shape}")
    y = np.clip(x @ _LUMA, 0.0, 1.0)
    return np.repeat(y[..., None], 3, axis=-1)


def check_kinds(kinds: Sequence[str], field: str = "dictionaries") -> tuple[str, ...]:
    kinds = tuple(kinds)
    if not kinds or any(k not in DICTIONARY_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"{field} must be a non-empty list of distinct names from {DICTIONARY_KINDS}; got {list(kinds)}"
        )
    return kinds


def prepare(images, kind: str) -> np.ndarray:
    """What a dictionary of `kind` looks at: the images themselves ('rgb') or their luminance."""
    check_kinds([kind], "kind")
    return luminance_images(images) if kind == "luminance" else np.asarray(images, np.float32)


def fit_dictionaries(
    images, kinds: Sequence[str] = DICTIONARY_KINDS, **fit_kwargs
) -> dict[str, patch_codes.PatchDictionary]:
    """images: [N, H, W, 3] float in [0, 1] -> {kind: PatchDictionary} fitted by
    `patch_codes.fit_patch_dictionary(prepare(images, kind), **fit_kwargs)` (same seed for every kind)."""
    return {k: patch_codes.fit_patch_dictionary(prepare(images, k), **fit_kwargs) for k in check_kinds(kinds)}


@functools.lru_cache(maxsize=32)
def _views_fn(set_name: str, out_size: int, color_strength: float | None):
    """The jitted two_views of one named set (cached: one compilation per set, size and batch shape)."""
    cfg = image_sets.named_set(set_name)
    if color_strength is not None:
        cfg.color_jitter.strength = float(color_strength)
    image_sets.validate(cfg)
    return jax.jit(lambda k, imgs, ids: image_ops.two_views(k, imgs, cfg, out_size, ids))


def make_views(
    key, images, set_name: str, out_size: int, *, batch_size: int = 512, color_strength: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two views of every image under the named augmentation set -> (view1, view2): [N, out, out, 3] float32.

    images: [N, H, W, 3] uint8 or float in [0, 1]. Example i uses fold_in(key, i) whatever `batch_size`
    (`two_views` with global example ids), so the views do not depend on how the images are batched.
    `color_strength` overrides the set's colour-jitter strength (0.5 = SimCLR CIFAR, 1.0 = ImageNet).
    """
    if set_name not in image_sets.VIEW_SETS:
        raise ValueError(f"augmentation set must be one of {image_sets.VIEW_SETS}, got {set_name!r}")
    batch_size, out_size = check_positive_int(batch_size, "batch_size"), check_positive_int(out_size, "out_size")
    fn = _views_fn(set_name, out_size, None if color_strength is None else float(color_strength))
    x = np.asarray(images)
    n = x.shape[0]
    v1 = np.empty((n, out_size, out_size, 3), np.float32)
    v2 = np.empty_like(v1)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        ids = np.arange(start, start + batch_size, dtype=np.uint32)
        chunk = x[start:stop]
        if stop - start < batch_size:  # pad to one compiled shape
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - (stop - start), axis=0)])
        a, b = fn(key, jnp.asarray(chunk), jnp.asarray(ids))
        v1[start:stop], v2[start:stop] = np.asarray(a)[: stop - start], np.asarray(b)[: stop - start]
    return v1, v2


def _row(a, b, counts) -> tuple[dict, np.ndarray | None]:
    s = correlation.summary(correlation.cross_view_correlation(a, b))
    row = {"corr_mean": s["mean"], "corr_median": s["median"], "n_dims": s["n_dims"]}
    reps = None if counts is None else bootstrap.correlation_replicates(a, b, counts)
    if reps is not None:
        row["corr_mean_ci"] = bootstrap.interval(reps)
    return row, reps


def view_table(
    views1,
    views2,
    dictionaries: Mapping[str, patch_codes.PatchDictionary],
    *,
    bins: int = 8,
    k: int = 4,
    threshold: float = 1.0,
    stride: int = 1,
    chunk_size: int = 128,
    counts: np.ndarray | None = None,
) -> dict:
    """Cross-view correlation of every dense statistic and of every dictionary's sparse statistics.

    views1, views2: [N, H, W, 3] float in [0, 1], row i of each a positive pair; counts: None or bootstrap
    resamples [B, N] of the pairs (intervals). The table is arranged as in the module docstring.
    """
    v1 = np.asarray(views1, np.float32)
    v2 = np.asarray(views2, np.float32)
    if v1.shape != v2.shape:
        raise ValueError(f"views1 and views2 must have the same shape; got {v1.shape} and {v2.shape}")
    kinds = check_kinds(list(dictionaries))
    pairs = {}
    d1 = image_stats.dense_statistics(v1, bins=bins, k=k, chunk_size=chunk_size)
    d2 = image_stats.dense_statistics(v2, bins=bins, k=k, chunk_size=chunk_size)
    pairs.update({name: (d1[name], d2[name]) for name in image_stats.DENSE_STATS})
    for kind in kinds:
        s1, s2 = (
            patch_codes.sparse_statistics(
                prepare(v, kind), dictionaries[kind], threshold=threshold, stride=stride, chunk_size=chunk_size
            )
            for v in (v1, v2)
        )
        pairs.update({f"{name}/{kind}": (s1[name], s2[name]) for name in patch_codes.SPARSE_STATS})
    stats, reps = {}, {}
    for name, (a, b) in pairs.items():
        stats[name], reps[name] = _row(a, b, counts)
    groups = {"dense_mean": list(image_stats.DENSE_STATS)}
    groups.update({f"sparse_mean/{kd}": [f"{n}/{kd}" for n in patch_codes.SPARSE_STATS] for kd in kinds})
    means = {g: float(np.mean([stats[r]["corr_mean"] for r in rows])) for g, rows in groups.items()}
    if counts is None:
        return _table(stats, means, int(v1.shape[0]), None)
    reps.update({g: np.mean([reps[r] for r in rows], axis=0) for g, rows in groups.items()})
    return dict(_table(stats, means, int(v1.shape[0]), reps), replicates=reps)


def _table(stats: dict, means: dict, num_images: int, reps: dict | None) -> dict:
    """A table (module docstring) of `stats` and means {'dense_mean', 'sparse_mean/<kind>'}; intervals from reps."""
    kinds = [g.split("/", 1)[1] for g in means if g != "dense_mean"]
    dense, sparse = means["dense_mean"], {k: means[f"sparse_mean/{k}"] for k in kinds}
    ratio = {k: dense / s if s != 0 else float("nan") for k, s in sparse.items()}
    table = {"stats": stats, "dense_mean": dense, "sparse_mean": sparse, "ratio": ratio, "num_images": num_images}
    if reps is not None:
        table["dense_mean_ci"] = bootstrap.interval(reps["dense_mean"])
        table["sparse_mean_ci"] = {k: bootstrap.interval(reps[f"sparse_mean/{k}"]) for k in kinds}
    return table


def augmentation_tables(
    key,
    images,
    set_names: Sequence[str],
    dictionaries: Mapping[str, patch_codes.PatchDictionary],
    *,
    out_size: int,
    batch_size: int = 512,
    color_strength: float | None = None,
    **table_kwargs,
) -> dict:
    """{set_name: view_table(two views of images: [N, H, W, 3] under that set, **table_kwargs)}.

    Every set draws with the same `key`, so the sets share their random slots ('crop' and 'crop_flip_color' crop
    the same boxes) and differences between sets are paired.
    """
    names = list(set_names)
    for name in names:
        if name not in image_sets.VIEW_SETS:
            raise ValueError(f"augmentation sets must be names from {image_sets.VIEW_SETS}; got {name!r}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"augmentation sets must be a non-empty list without repeats; got {names}")
    out = {}
    for name in names:
        v1, v2 = make_views(key, images, name, out_size, batch_size=batch_size, color_strength=color_strength)
        out[name] = view_table(v1, v2, dictionaries, **table_kwargs)
    return out


def combine_seeds(tables: Sequence[Mapping], seeds: Sequence[int]) -> dict:
    """The per-seed tables of one augmentation set (same images, same bootstrap resamples) -> one table.

    Every number is the mean over seeds, intervals those of the seed-averaged replicates (which are dropped);
    'seeds' holds the seeds, each seed's dense_mean and sparse_mean and their sd across seeds (ddof=1).
    """
    if len(tables) != len(seeds) or not tables:
        raise ValueError(f"need one table per seed; got {len(tables)} tables for seeds {list(seeds)}")
    first = tables[0]
    stats = {}
    for row, r in first["stats"].items():
        stats[row] = {k: float(np.mean([t["stats"][row][k] for t in tables])) for k in ("corr_mean", "corr_median")}
        stats[row]["n_dims"] = r["n_dims"]
    per_seed = {"dense_mean": [t["dense_mean"] for t in tables]}
    per_seed.update({f"sparse_mean/{k}": [t["sparse_mean"][k] for t in tables] for k in first["sparse_mean"]})
    reps = None
    if "replicates" in first:
        reps = {g: np.mean([t["replicates"][g] for t in tables], axis=0) for g in first["replicates"]}
        for row in stats:
            stats[row]["corr_mean_ci"] = bootstrap.interval(reps[row])
    out = _table(stats, {g: float(np.mean(v)) for g, v in per_seed.items()}, first["num_images"], reps)
    sd = {g: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for g, v in per_seed.items()}
    out["seeds"] = {"seeds": [int(s) for s in seeds], "values": per_seed, "sd": sd}
    return out
