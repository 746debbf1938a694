"""What the decoupling study measures (config.data, model_free, measure, tsne, vis).

data: fit images (patch dictionaries, kNN bank, probe training) and measured images, seeded subsets of two splits.
model_free: per augmentation set, the cross-view correlation of dense and sparse image statistics.
measure: per encoder and layer, activation density and channel cross-view correlation; reliance of the features
on image statistics (ridge R^2); kNN and linear-probe accuracy. tsne / vis: the encoder's pictures.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import ml_collections
import numpy as np

from cl_features.augment import image_sets
from cl_features.config_checks import as_tuple, at_least, check, fraction, is_num, one_of, positive, split_list
from cl_features.data import image_sources, photos
from cl_features.decoupling.encoders import Encoder
from cl_features.image_training import inputs
from cl_features.measure import (
    bootstrap,
    feature_vis,
    image_stats,
    knn,
    linear_probe,
    model_free,
    patch_codes,
    representation,
)
from cl_features.measure import tsne as tsne_lib

DATA_SOURCES = inputs.SOURCES
# Offsets folded into the seed so every random stream is distinct and reproducible.
FIT_STREAM, MEASURE_STREAM, MODEL_FREE_STREAM, VIEWS_STREAM, VIS_STREAM = 1, 2, 3, 4, 5


def check_fields(c: ml_collections.ConfigDict) -> None:
    d, m, e, size = c.data, c.model_free, c.measure, c.data.image_size
    one_of(c, "data.source", DATA_SOURCES)
    at_least(c, 8, "data.image_size")
    for f in ("num_fit_images", "num_images"):
        check(c, f"data.{f}", lambda v: v is None or v >= 16, "None (the whole split) or an int >= 16")
    at_least(c, 1, "data.photos_max_zoom", "model_free.n_atoms", "model_free.stride", "model_free.batch_size")
    for f in ("fit_split", "measure_split"):
        if d.source == "tfds":
            check(c, f"data.{f}", bool, "a non-empty string")
        else:
            one_of(c, f"data.{f}", photos.SPLITS)
    if d.source == "tfds":
        check(c, "data.name", bool, "a non-empty string")
    if d.source == "folder":
        for f in ("folder_train", "folder_test"):
            check(c, f"data.{f}", lambda v: isinstance(v, str) and os.path.isdir(v), "a directory of class folders")
    split_list(c, "model_free.sets", image_sets.VIEW_SETS)
    at_least(c, 1, "model_free.seeds")
    at_least(c, 0, "model_free.resamples")
    split_list(c, "model_free.dictionaries", model_free.DICTIONARY_KINDS)
    strength = "a number in [0, 1] (the named sets' contrast and saturation reach 0.8 x strength)"
    check(c, "model_free.color_strength", lambda v: 0 <= v <= 1, strength)
    check(c, "model_free.patch_size", lambda v: 2 <= v <= size, f"an int in [2, data.image_size={size}]")
    check(c, "model_free.dct_k", lambda v: 1 <= v <= size, f"an int in [1, data.image_size={size}]")
    check(c, "model_free.n_patches", lambda v: v >= m.n_atoms, f"an int >= model_free.n_atoms={m.n_atoms}")
    at_least(c, 0, "model_free.kmeans_iters", "model_free.threshold", "vis.steps", "vis.jitter", "vis.blur_every")
    at_least(c, 2, "model_free.bins")
    positive(c, "model_free.zca_eps", "measure.knn_temperature", "vis.learning_rate", "vis.blur_sigma", "vis.init_std")
    split_list(c, "measure.view_sets", image_sets.NAMED_SETS, allow_empty=True)
    at_least(c, 1, "measure.batch_size", "vis.channels")
    check(c, "measure.threshold", is_num, "a finite number")
    fraction(c, "measure.dense_unit")
    ridge = as_tuple(e.ridge_l2)
    check(
        c, "measure.ridge_l2", lambda v: ridge and all(is_num(x) and x >= 0 for x in ridge), "a number >= 0 or a list"
    )
    probe = as_tuple(e.probe_l2)
    check(c, "measure.probe_l2", lambda v: probe and all(is_num(x) and x > 0 for x in probe), "a number > 0 or a list")
    n_fit, n = d.num_fit_images or math.inf, d.num_images or math.inf  # None: the whole split, checked when read
    check(c, "measure.knn_k", lambda v: 1 <= v <= n_fit, f"an int in [1, data.num_fit_images={n_fit}]")
    check(c, "tsne.perplexity", lambda v: 0 < v < n - 1, f"in (0, data.num_images - 1 = {n - 1})")
    at_least(c, 250, "tsne.max_iter")
    check(c, "vis.layer", bool, "a layer name (stem, stage1, ..., features)")


@dataclasses.dataclass(frozen=True)
class Images:
    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int32 [N]
    class_names: list[str]


def load_images(c: ml_collections.ConfigDict, split: str, n: int | None, stream: int) -> Images:
    """n images (None: all) of `split` at data.image_size: a seeded random subset, read through the image
    experiment's sources (image_training.inputs.open_split)."""
    d = c.data
    rng = np.random.default_rng([c.seed, stream])
    per = math.ceil(n / len(photos.PHOTO_NAMES)) if n else None
    source = inputs.open_split(d, split, c.seed, photos_crops_per_image=per)
    n = len(source) if n is None else n
    if len(source) < n:
        where = f"{d.name}:{split}" if d.source == "tfds" else f"the {d.source} split {split!r}"
        raise ValueError(f"config.data.num_images / num_fit_images ({n}) exceeds the {len(source)} images of {where}")
    keep = np.sort(rng.permutation(len(source))[:n])
    if isinstance(source, photos.PhotoCropsSource):
        images, labels = source.images[keep], source.labels[keep]
    else:
        recs = [source[int(i)] for i in keep]
        images = np.stack([image_sources.fit_image(r["image"], d.image_size) for r in recs])
        labels = np.asarray([int(r["label"]) for r in recs], np.int32)
    return Images(images, labels, inputs.class_names(d, source))


def to_unit(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


def stream_key(c: ml_collections.ConfigDict, stream: int, seed: int | None = None) -> jax.Array:
    """The key of one random stream of the study's seed (or of `seed`)."""
    return jax.random.fold_in(jax.random.key(c.seed if seed is None else seed), stream)


def fit_dictionaries(c: ml_collections.ConfigDict, fit: Images, kinds, seed: int | None = None) -> dict:
    m = c.model_free
    return model_free.fit_dictionaries(
        to_unit(fit.images),
        kinds,
        patch_size=m.patch_size,
        n_atoms=m.n_atoms,
        n_patches=m.n_patches,
        seed=c.seed if seed is None else seed,
        iters=m.kmeans_iters,
        zca_eps=m.zca_eps,
    )


def model_free_tables(c: ml_collections.ConfigDict, measured: Images, fit: Images, dictionaries: dict, say) -> dict:
    """{set: table} of the model-free cross-view correlations, over model_free.seeds seeds.

    Seed s (= seed, seed + 1, ...) redraws the views and refits the dictionaries (`dictionaries`: those of the
    first seed); every seed measures the same images on the same model_free.resamples bootstrap resamples, and
    measure.model_free.combine_seeds averages them (intervals over images, spread over seeds).
    """
    m = c.model_free
    seeds = [c.seed + i for i in range(m.seeds)]
    counts = bootstrap.resample_counts(len(measured.labels), m.resamples, c.seed) if m.resamples else None
    per_seed = []
    for s in seeds:
        dicts = dictionaries if s == c.seed else fit_dictionaries(c, fit, list(dictionaries), seed=s)
        per_seed.append(
            model_free.augmentation_tables(
                stream_key(c, MODEL_FREE_STREAM, seed=s),
                measured.images,
                split_list(c, "model_free.sets"),
                dicts,
                out_size=c.data.image_size,
                batch_size=m.batch_size,
                color_strength=m.color_strength,
                bins=m.bins,
                k=m.dct_k,
                threshold=m.threshold,
                stride=m.stride,
                counts=counts,
            )
        )
        say(f"model-free: seed {s} done ({len(per_seed)}/{len(seeds)})")
    return {name: model_free.combine_seeds([t[name] for t in per_seed], seeds) for name in per_seed[0]}


def image_statistics(c: ml_collections.ConfigDict, measured: Images, lum_dictionary) -> dict[str, np.ndarray]:
    """Per-image statistics of the clean measured images that the representation may explain."""
    x, m = to_unit(measured.images), c.model_free
    stats = image_stats.dense_statistics(x, bins=m.bins, k=m.dct_k)
    codes = patch_codes.sparse_statistics(
        model_free.luminance_images(x), lum_dictionary, threshold=m.threshold, stride=m.stride
    )
    stats["patch_codes_mean/luminance"] = codes["patch_codes_mean"]
    return stats


def measure_encoder(
    c: ml_collections.ConfigDict, enc: Encoder, fit: Images, measured: Images, statistics: dict[str, np.ndarray]
) -> tuple[dict, np.ndarray]:
    """-> ({'train_set', 'scores', 'layers'}, features of the measured images [N, d]).

    Density and reliance on the clean measured images; channel correlation on views of them from each of
    measure.view_sets; kNN and linear probe trained on the fit images' features, tested on the measured ones.
    """
    e = c.measure
    outputs = representation.outputs_fn(
        enc.module, batch_size=e.batch_size, preprocess=enc.preprocess(), threshold=e.threshold
    )
    clean = outputs(measured.images)
    views = {}
    for name in split_list(c, "measure.view_sets", allow_empty=True):
        v1, v2 = model_free.make_views(
            stream_key(c, VIEWS_STREAM),
            measured.images,
            name,
            enc.input_size,
            batch_size=e.batch_size,
            color_strength=c.model_free.color_strength,
        )
        views[name] = (outputs(v1), outputs(v2))
    layers = representation.layer_table(clean, views, dense_unit=e.dense_unit)
    reliance = representation.statistic_reliance(clean.features, statistics, l2=list(as_tuple(e.ridge_l2)), seed=c.seed)
    scores = dict(enc.scores, dense_reliance=reliance.pop("colour_histogram"))
    scores.update({f"reliance/{k}": v for k, v in reliance.items()})
    bank = outputs(fit.images).features
    num_classes = len(measured.class_names)
    scores["knn_acc"] = knn.knn_accuracy(
        bank, fit.labels, clean.features, measured.labels, num_classes, k=e.knn_k, temperature=e.knn_temperature
    )
    if e.probe:
        l2 = list(as_tuple(e.probe_l2))
        res = linear_probe.linear_probe(
            bank, fit.labels, clean.features, measured.labels, num_classes, method="logistic", l2=l2, seed=c.seed
        )
        scores["linear_probe_acc"] = res["accuracy"]
    return {"train_set": enc.train_set, "scores": scores, "layers": layers}, clean.features


def tsne_map(c: ml_collections.ConfigDict, feats: np.ndarray) -> np.ndarray:
    return tsne_lib.embed(feats, perplexity=c.tsne.perplexity, seed=c.seed, max_iter=c.tsne.max_iter)


def visualise(c: ml_collections.ConfigDict, enc: Encoder):
    """The first vis.channels channels of vis.layer, by gradient ascent on the input (feature_vis)."""
    v = c.vis
    fields = ("steps", "learning_rate", "jitter", "blur_every", "blur_sigma", "decorrelate", "init_std")
    return feature_vis.visualise_channels(
        enc.module,
        v.layer,
        list(range(v.channels)),
        key=stream_key(c, VIS_STREAM),
        size=enc.input_size,
        preprocess=enc.preprocess(),
        **{f: v[f] for f in fields},
    )
