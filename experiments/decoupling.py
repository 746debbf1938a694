r"""Feature decoupling on real images: model-free statistics, trained representations, and the paper's pictures.

    python -m experiments.decoupling --config=experiments/configs/decoupling_photos.py --workdir=runs/decoupling_photos
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/decoupling_c10 \
        --config.models.source=checkpoints --config.models.checkpoints=runs/abl/crop,runs/abl/simclr

One report folder (cl_features/report/decoupling.py): tables (markdown + JSON), figures (PNG), summary.md.
`validate(config)` checks every field before anything is compiled; `run(config, workdir)` does the work.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from cl_features.augment import images as augment_images
from cl_features.config_checks import is_int as _is_int
from cl_features.config_checks import require as _require
from cl_features.data import images as data_images
from cl_features.data import photos
from cl_features.measure import (
    feature_vis,
    image_stats,
    knn,
    linear_probe,
    model_free,
    patch_codes,
    representation,
    tsne,
)
from cl_features.report import decoupling as report
from cl_features.report import run_info
from cl_features.train import distributed
from cl_features.train import images as train_images

DATA_SOURCES = ("photos", "tfds")
MODEL_SOURCES = ("none", "init", "checkpoints", "train")
# Offsets folded into the seed so every random stream is distinct and reproducible.
_FIT_STREAM, _MEASURE_STREAM, _MODEL_FREE_STREAM, _VIEWS_STREAM, _VIS_STREAM, _INIT_STREAM = 1, 2, 3, 4, 5, 6


# ----------------------------------------------------------------------------------------------- config


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def split_list(value, field: str, allowed: tuple[str, ...] | None = None, *, allow_empty: bool = False) -> list[str]:
    """'a,b' -> ['a', 'b'], checked: no repeats, each in `allowed` (when given)."""
    if not isinstance(value, str):
        raise ValueError(f"config.{field} must be a comma-separated string, got {value!r}")
    items = [s.strip() for s in value.split(",") if s.strip()]
    what = f"names from {allowed}" if allowed else "names"
    _require(allow_empty or bool(items), field, f"a non-empty comma-separated list of {what}", value)
    _require(len(set(items)) == len(items), field, "a list without repeats", value)
    if allowed is not None:
        for s in items:
            _require(s in allowed, field, f"a comma-separated list of {what}", value)
    return items


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any compilation; returns a copy."""
    c = ml_collections.ConfigDict(config.to_dict())
    _require(_is_int(c.seed) and c.seed >= 0, "seed", "an int >= 0", c.seed)
    d = c.data
    _require(d.source in DATA_SOURCES, "data.source", f"one of {DATA_SOURCES}", d.source)
    _require(_is_int(d.image_size) and d.image_size >= 8, "data.image_size", "an int >= 8", d.image_size)
    _require(
        _is_int(d.num_fit_images) and d.num_fit_images >= 16, "data.num_fit_images", "an int >= 16", d.num_fit_images
    )
    _require(_is_int(d.num_images) and d.num_images >= 16, "data.num_images", "an int >= 16", d.num_images)
    _require(
        _is_num(d.photos_max_zoom) and d.photos_max_zoom >= 1,
        "data.photos_max_zoom",
        "a number >= 1",
        d.photos_max_zoom,
    )
    if d.source == "photos":
        for f in ("fit_split", "measure_split"):
            _require(d[f] in photos.SPLITS, f"data.{f}", f"one of {photos.SPLITS} for data.source=photos", d[f])
    else:
        for f in ("name", "fit_split", "measure_split"):
            _require(isinstance(d[f], str) and bool(d[f]), f"data.{f}", "a non-empty string", d[f])

    m = c.model_free
    _require(isinstance(m.enabled, bool), "model_free.enabled", "a bool", m.enabled)
    split_list(m.sets, "model_free.sets", augment_images.NAMED_SETS)
    split_list(m.dictionaries, "model_free.dictionaries", model_free.DICTIONARY_KINDS)
    _require(
        _is_num(m.color_strength) and 0 <= m.color_strength <= 1,
        "model_free.color_strength",
        "a number in [0, 1] (the named sets' contrast and saturation reach 0.8 x strength)",
        m.color_strength,
    )
    _require(
        _is_int(m.patch_size) and 2 <= m.patch_size <= d.image_size,
        "model_free.patch_size",
        f"an int in [2, data.image_size={d.image_size}]",
        m.patch_size,
    )
    _require(_is_int(m.n_atoms) and m.n_atoms >= 1, "model_free.n_atoms", "an int >= 1", m.n_atoms)
    _require(
        _is_int(m.n_patches) and m.n_patches >= m.n_atoms,
        "model_free.n_patches",
        f"an int >= model_free.n_atoms={m.n_atoms}",
        m.n_patches,
    )
    _require(_is_int(m.kmeans_iters) and m.kmeans_iters >= 0, "model_free.kmeans_iters", "an int >= 0", m.kmeans_iters)
    _require(_is_num(m.zca_eps) and m.zca_eps > 0, "model_free.zca_eps", "a number > 0", m.zca_eps)
    _require(_is_num(m.threshold) and m.threshold >= 0, "model_free.threshold", "a number >= 0", m.threshold)
    _require(_is_int(m.stride) and m.stride >= 1, "model_free.stride", "an int >= 1", m.stride)
    _require(_is_int(m.bins) and m.bins >= 2, "model_free.bins", "an int >= 2", m.bins)
    _require(
        _is_int(m.dct_k) and 1 <= m.dct_k <= d.image_size,
        "model_free.dct_k",
        f"an int in [1, data.image_size={d.image_size}]",
        m.dct_k,
    )
    _require(_is_int(m.batch_size) and m.batch_size >= 1, "model_free.batch_size", "an int >= 1", m.batch_size)

    s = c.models
    _require(s.source in MODEL_SOURCES, "models.source", f"one of {MODEL_SOURCES}", s.source)
    _require(isinstance(s.include_init, bool), "models.include_init", "a bool", s.include_init)
    if s.source == "checkpoints":
        checkpoint_dirs(s.checkpoints)
    if s.source in ("init", "train") or s.include_init:
        _require(
            isinstance(s.image_config, str) and s.image_config.isidentifier(),
            "models.image_config",
            "the module name of a config in experiments/configs/ (e.g. photos_simclr_tiny)",
            s.image_config,
        )
    if s.source == "checkpoints":
        _require(
            isinstance(s.checkpoint_subdir, str) and bool(s.checkpoint_subdir),
            "models.checkpoint_subdir",
            "a directory name inside each image-experiment workdir",
            s.checkpoint_subdir,
        )
    if s.source == "train":
        split_list(s.train_sets, "models.train_sets", augment_images.NAMED_SETS, allow_empty=bool(s.supervised_set))
        _require(
            s.supervised_set == "" or s.supervised_set in augment_images.NAMED_SETS,
            "models.supervised_set",
            f"'' or one of {augment_images.NAMED_SETS}",
            s.supervised_set,
        )
        if s.supervised_set:
            _require(
                isinstance(s.supervised_image_config, str) and s.supervised_image_config.isidentifier(),
                "models.supervised_image_config",
                "the module name of a config in experiments/configs/",
                s.supervised_image_config,
            )
        _require(
            s.train_steps is None or (_is_int(s.train_steps) and s.train_steps >= 1),
            "models.train_steps",
            "None or an int >= 1",
            s.train_steps,
        )

    e = c.measure
    split_list(e.view_sets, "measure.view_sets", augment_images.NAMED_SETS, allow_empty=True)
    _require(_is_int(e.batch_size) and e.batch_size >= 1, "measure.batch_size", "an int >= 1", e.batch_size)
    _require(_is_num(e.threshold), "measure.threshold", "a finite number", e.threshold)
    _require(_is_num(e.dense_unit) and 0 < e.dense_unit <= 1, "measure.dense_unit", "in (0, 1]", e.dense_unit)
    l2s = tuple(e.ridge_l2) if isinstance(e.ridge_l2, (tuple, list)) else (e.ridge_l2,)
    _require(
        len(l2s) >= 1 and all(_is_num(v) and v >= 0 for v in l2s),
        "measure.ridge_l2",
        "a number >= 0 or a non-empty list of them (chosen on the training rows)",
        e.ridge_l2,
    )
    _require(
        _is_int(e.knn_k) and 1 <= e.knn_k <= d.num_fit_images,
        "measure.knn_k",
        f"an int in [1, data.num_fit_images={d.num_fit_images}]",
        e.knn_k,
    )
    _require(_is_num(e.knn_temperature) and e.knn_temperature > 0, "measure.knn_temperature", "> 0", e.knn_temperature)
    _require(isinstance(e.probe, bool), "measure.probe", "a bool", e.probe)
    l2s = tuple(e.probe_l2) if isinstance(e.probe_l2, (tuple, list)) else (e.probe_l2,)
    _require(
        len(l2s) >= 1 and all(_is_num(v) and v > 0 for v in l2s),
        "measure.probe_l2",
        "a number > 0 or a non-empty list of them",
        e.probe_l2,
    )

    t = c.tsne
    _require(isinstance(t.enabled, bool), "tsne.enabled", "a bool", t.enabled)
    _require(
        _is_num(t.perplexity) and 0 < t.perplexity < d.num_images - 1,
        "tsne.perplexity",
        f"in (0, data.num_images - 1 = {d.num_images - 1})",
        t.perplexity,
    )
    _require(_is_int(t.max_iter) and t.max_iter >= 250, "tsne.max_iter", "an int >= 250", t.max_iter)

    v = c.vis
    _require(isinstance(v.enabled, bool), "vis.enabled", "a bool", v.enabled)
    _require(
        isinstance(v.layer, str) and bool(v.layer), "vis.layer", "a layer name (stem, stage1, ..., features)", v.layer
    )
    _require(_is_int(v.channels) and v.channels >= 1, "vis.channels", "an int >= 1", v.channels)
    _require(_is_int(v.steps) and v.steps >= 0, "vis.steps", "an int >= 0", v.steps)
    _require(_is_num(v.learning_rate) and v.learning_rate > 0, "vis.learning_rate", "> 0", v.learning_rate)
    _require(_is_int(v.jitter) and v.jitter >= 0, "vis.jitter", "an int >= 0", v.jitter)
    _require(_is_int(v.blur_every) and v.blur_every >= 0, "vis.blur_every", "an int >= 0", v.blur_every)
    _require(_is_num(v.blur_sigma) and v.blur_sigma > 0, "vis.blur_sigma", "> 0", v.blur_sigma)
    _require(isinstance(v.decorrelate, bool), "vis.decorrelate", "a bool", v.decorrelate)
    _require(_is_num(v.init_std) and v.init_std > 0, "vis.init_std", "> 0", v.init_std)
    _require(
        m.enabled or s.source != "none" or s.include_init,
        "model_free.enabled",
        "True when models.source is 'none' (otherwise there is nothing to measure)",
        m.enabled,
    )
    return c


def checkpoint_dirs(value) -> dict[str, str]:
    """'a/b/crop,simclr=runs/x' -> {'crop': 'a/b/crop', 'simclr': 'runs/x'} (name: the given one or the basename)."""
    out: dict[str, str] = {}
    for item in split_list(value, "models.checkpoints"):
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        name = name or os.path.basename(os.path.normpath(path))
        _require(bool(name) and bool(path), "models.checkpoints", "a comma list of DIR or NAME=DIR", value)
        _require(name not in out, "models.checkpoints", "a list with distinct names", value)
        out[name] = path
    return out


# ------------------------------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Images:
    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int32 [N]
    class_names: list[str]


def load_images(c: ml_collections.ConfigDict, split: str, n: int, stream: int) -> Images:
    """n images of `split` at data.image_size: a seeded random subset (without replacement where possible)."""
    d = c.data
    rng = np.random.default_rng([c.seed, stream])
    if d.source == "photos":
        per = math.ceil(n / len(photos.PHOTO_NAMES))
        images, labels, names = photos.load_photo_crops(
            size=d.image_size, crops_per_image=per, split=split, seed=c.seed, max_zoom=float(d.photos_max_zoom)
        )
        keep = np.sort(rng.permutation(len(labels))[:n])
        return Images(images[keep], labels[keep], names)
    source = data_images.open_source(d.name, split, d.data_dir)
    if len(source) < n:
        raise ValueError(
            f"config.data.num_images / num_fit_images ({n}) exceeds the {len(source)} records of {d.name}:{split}"
        )
    idx = np.sort(rng.permutation(len(source))[:n])
    recs = [source[int(i)] for i in idx]
    images = np.stack([data_images.fit_image(r["image"], d.image_size) for r in recs])
    labels = np.asarray([int(r["label"]) for r in recs], np.int32)
    num_classes = data_images.dataset_info(d.name, d.data_dir).num_classes
    return Images(images, labels, [str(i) for i in range(num_classes)])


def to_unit(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 255.0


# ----------------------------------------------------------------------------------------------- models


@dataclasses.dataclass
class Encoder:
    """A model to measure: the encoder module and how images reach it."""

    name: str
    train_set: str  # the augmentation set it was trained with, 'supervised:<set>', or 'init'
    module: nnx.Module
    input_size: int
    mean: tuple | None  # per-channel normalisation after augmentation (None: raw [0, 1])
    std: tuple | None
    scores: dict = dataclasses.field(default_factory=dict)  # numbers that came with it (e.g. training's kNN)


def preprocess_fn(enc: Encoder) -> Callable[[jax.Array], jax.Array]:
    """[B, H, W, 3] float in [0, 1] -> the encoder's input: resized to input_size (if needed), normalised."""
    size = enc.input_size
    mean = None if enc.mean is None else jnp.asarray(enc.mean, jnp.float32)
    std = None if enc.std is None else jnp.asarray(enc.std, jnp.float32)

    def fn(x):
        if x.shape[1] != size or x.shape[2] != size:
            box = (0, 0, x.shape[1], x.shape[2])
            x = jax.vmap(lambda im: augment_images.resized_crop(im, box, size))(x)
        if mean is not None:
            x = (x - mean) / std
        return x

    return fn


def image_config(name: str) -> ml_collections.ConfigDict:
    """experiments/configs/<name>.py's config (an image experiment's, cl_features/train/images.py)."""
    try:
        module = importlib.import_module(f"experiments.configs.{name}")
    except ModuleNotFoundError:
        raise ValueError(
            f"config.models.image_config must name a config in experiments/configs/, got {name!r}"
        ) from None
    return module.get_config()


def _encoder(name: str, train_set: str, ic: ml_collections.ConfigDict, module: nnx.Module, scores=None) -> Encoder:
    mean = None if ic.data.mean is None else tuple(ic.data.mean)
    std = None if ic.data.std is None else tuple(ic.data.std)
    return Encoder(name, train_set, module, int(ic.model.input_size), mean, std, dict(scores or {}))


def _train_set(ic: ml_collections.ConfigDict) -> str:
    return ic.augment.set if ic.task == "simclr" else f"supervised:{ic.augment.set}"


def init_encoder(c: ml_collections.ConfigDict, num_classes: int) -> Encoder:
    """The randomly initialised encoder of models.image_config (as the image experiment builds it)."""
    ic = train_images.validate(image_config(c.models.image_config))
    return _encoder("init", "init", ic, train_images.make_model(ic, num_classes).encoder)


def run_config(c: ml_collections.ConfigDict, task: str, set_name: str) -> ml_collections.ConfigDict:
    """The image-experiment config that trains the `task` encoder with augmentation set `set_name`."""
    name = c.models.image_config if task == "simclr" else c.models.supervised_image_config
    ic = image_config(name)
    ic.task = task
    ic.augment.set = set_name
    if c.models.train_steps is not None:
        ic.train.steps = c.models.train_steps
    return train_images.validate(ic)


def train_encoder(ic: ml_collections.ConfigDict, name: str, workdir: str | None, *, verbose: bool) -> Encoder:
    """Trains one image model in this process (cl_features.train.images without its monitoring) in `workdir`,
    which it resumes from: a finished one is not trained again. Returns its encoder."""
    results, model = train_images.train(ic, workdir, monitor=False, verbose=verbose)
    scores = {"final_loss": results["final_loss"], "train_steps": results["steps"], "train_seconds": results["seconds"]}
    return _encoder(name, _train_set(ic), ic, model.encoder, scores)


def restore_encoder(path: str, name: str, subdir: str = "checkpoints") -> Encoder:
    """The encoder of an image-experiment workdir at its newest checkpoint (cl_features.train.images.restore)."""
    try:
        ic, model, step, summary = train_images.restore(path, subdir)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"config.models.checkpoints: {e}") from None
    scores = {f"train/{k}": summary[k] for k in ("knn_acc", "linear_probe_acc", "test_acc") if k in summary}
    scores["train_steps"] = step
    return _encoder(name, _train_set(ic), ic, model.encoder, scores)


def load_encoders(
    c: ml_collections.ConfigDict, num_classes: int, workdir: str | None, *, verbose: bool
) -> list[Encoder]:
    """The models to measure, as models.source says (and the initial encoder with models.include_init)."""
    s = c.models
    encoders = []
    if s.include_init or s.source == "init":
        encoders.append(init_encoder(c, num_classes))
    if s.source == "checkpoints":
        for name, path in checkpoint_dirs(s.checkpoints).items():
            encoders.append(restore_encoder(path, name, s.checkpoint_subdir))
    elif s.source == "train":
        runs = [(n, "simclr", n) for n in split_list(s.train_sets, "models.train_sets", allow_empty=True)]
        if s.supervised_set:
            runs.append(("supervised", "supervised", s.supervised_set))
        for name, task, set_name in runs:
            ic = run_config(c, task, set_name)
            sub = os.path.join(workdir, "models", name) if workdir else None
            encoders.append(train_encoder(ic, name, sub, verbose=verbose))
    return encoders


# -------------------------------------------------------------------------------------------------- measure


def fit_dictionaries(c: ml_collections.ConfigDict, fit: Images, kinds) -> dict:
    m = c.model_free
    return model_free.fit_dictionaries(
        to_unit(fit.images),
        kinds,
        patch_size=m.patch_size,
        n_atoms=m.n_atoms,
        n_patches=m.n_patches,
        seed=c.seed,
        iters=m.kmeans_iters,
        zca_eps=m.zca_eps,
    )


def measure_model_free(c: ml_collections.ConfigDict, measured: Images, dictionaries: dict) -> dict:
    m = c.model_free
    key = jax.random.fold_in(jax.random.key(c.seed), _MODEL_FREE_STREAM)
    return model_free.augmentation_tables(
        key,
        measured.images,
        split_list(m.sets, "model_free.sets"),
        dictionaries,
        out_size=c.data.image_size,
        batch_size=m.batch_size,
        color_strength=m.color_strength,
        bins=m.bins,
        k=m.dct_k,
        threshold=m.threshold,
        stride=m.stride,
    )


def image_statistics(c: ml_collections.ConfigDict, measured: Images, lum_dictionary) -> dict[str, np.ndarray]:
    """Per-image statistics of the clean measured images that the representation may explain."""
    x = to_unit(measured.images)
    m = c.model_free
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
        enc.module, batch_size=e.batch_size, preprocess=preprocess_fn(enc), threshold=e.threshold
    )
    clean = outputs(measured.images)
    views = {}
    key = jax.random.fold_in(jax.random.key(c.seed), _VIEWS_STREAM)
    for name in split_list(e.view_sets, "measure.view_sets", allow_empty=True):
        v1, v2 = model_free.make_views(
            key,
            measured.images,
            name,
            enc.input_size,
            batch_size=e.batch_size,
            color_strength=c.model_free.color_strength,
        )
        views[name] = (outputs(v1), outputs(v2))
    layers = representation.layer_table(clean, views, dense_unit=e.dense_unit)
    l2 = list(e.ridge_l2) if isinstance(e.ridge_l2, (tuple, list)) else [e.ridge_l2]
    reliance = representation.statistic_reliance(clean.features, statistics, l2=l2, seed=c.seed)
    scores = dict(enc.scores)
    scores["dense_reliance"] = reliance.pop("colour_histogram")
    scores.update({f"reliance/{k}": v for k, v in reliance.items()})
    bank = outputs(fit.images).features
    num_classes = len(measured.class_names)
    scores["knn_acc"] = knn.knn_accuracy(
        bank, fit.labels, clean.features, measured.labels, num_classes, k=e.knn_k, temperature=e.knn_temperature
    )
    if e.probe:
        l2 = list(e.probe_l2) if isinstance(e.probe_l2, (tuple, list)) else [e.probe_l2]
        res = linear_probe.linear_probe(
            bank, fit.labels, clean.features, measured.labels, num_classes, method="logistic", l2=l2, seed=c.seed
        )
        scores["linear_probe_acc"] = res["accuracy"]
    return {"train_set": enc.train_set, "scores": scores, "layers": layers}, clean.features


# ------------------------------------------------------------------------------------------------------ run


def run(config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True) -> dict:
    """Measures and writes the report into `workdir` (None: nothing written); returns the report's numbers."""
    t0 = time.perf_counter()
    c = validate(config)
    say = print if verbose and jax.process_index() == 0 else (lambda *a, **k: None)
    if workdir:
        run_info.write_run_info(workdir, c, kind="decoupling")  # process 0 only; refuses another kind's workdir
    fit = load_images(c, c.data.fit_split, c.data.num_fit_images, _FIT_STREAM)
    measured = load_images(c, c.data.measure_split, c.data.num_images, _MEASURE_STREAM)
    say(
        f"data: {len(fit.labels)} fit images ({c.data.fit_split}), {len(measured.labels)} measured "
        f"({c.data.measure_split}), {len(fit.class_names)} classes"
    )
    encoders = load_encoders(c, len(measured.class_names), workdir, verbose=verbose)
    kinds = split_list(c.model_free.dictionaries, "model_free.dictionaries")
    if encoders and "luminance" not in kinds:
        kinds = kinds + ["luminance"]
    dictionaries = fit_dictionaries(c, fit, kinds)

    tables = None
    if c.model_free.enabled:
        tables = measure_model_free(
            c, measured, {k: dictionaries[k] for k in split_list(c.model_free.dictionaries, "model_free.dictionaries")}
        )
        for name, t in tables.items():
            say(
                f"model-free {name:16s} dense {t['dense_mean']:.3f}  "
                + "  ".join(f"sparse/{k} {v:.3f}" for k, v in t["sparse_mean"].items())
            )

    models, maps, vis = {}, {}, {}
    if encoders:
        statistics = image_statistics(c, measured, dictionaries["luminance"])
        for enc in encoders:
            entry, feats = measure_encoder(c, enc, fit, measured, statistics)
            if c.tsne.enabled:
                maps[enc.name] = tsne.embed(feats, perplexity=c.tsne.perplexity, seed=c.seed, max_iter=c.tsne.max_iter)
                entry["scores"]["tsne_separation"] = tsne.separation(maps[enc.name], measured.labels)
            if c.vis.enabled:
                res = feature_vis.visualise_channels(
                    enc.module,
                    c.vis.layer,
                    list(range(c.vis.channels)),
                    key=jax.random.fold_in(jax.random.key(c.seed), _VIS_STREAM),
                    size=enc.input_size,
                    steps=c.vis.steps,
                    learning_rate=c.vis.learning_rate,
                    jitter=c.vis.jitter,
                    blur_every=c.vis.blur_every,
                    blur_sigma=c.vis.blur_sigma,
                    decorrelate=c.vis.decorrelate,
                    init_std=c.vis.init_std,
                    preprocess=preprocess_fn(enc),
                )
                vis[enc.name] = res.images
                entry["vis_activation"] = res.activation.tolist()
                entry["vis_activation_init"] = res.activation_init.tolist()
            models[enc.name] = entry
            say(f"model {enc.name}: " + "  ".join(f"{k} {v:.3f}" for k, v in entry["scores"].items()))

    out = {"model_free": tables, "models": models or None, "seconds": round(time.perf_counter() - t0, 1)}
    if workdir and jax.process_index() == 0:
        notes = [
            f"data: {c.data.source}"
            + (f" {c.data.name}" if c.data.source == "tfds" else "")
            + f", {len(measured.labels)} measured images ({c.data.measure_split}) at {c.data.image_size}px, "
            f"{len(fit.labels)} fit images ({c.data.fit_split}); seed {c.seed}; {out['seconds']} s"
        ]
        out["paths"] = report.write_report(
            workdir,
            model_free=tables,
            models=models or None,
            tsne_maps=maps or None,
            tsne_labels=measured.labels,
            class_names=measured.class_names,
            vis=vis or None,
            vis_channels=list(range(c.vis.channels)),
            vis_layer=c.vis.layer,
            notes=notes,
        )
    return out


# ----------------------------------------------------------------------------------------------------- main

FLAGS = flags.FLAGS
distributed.define_flags()
config_flags.DEFINE_config_file("config", "experiments/configs/decoupling_photos.py", "Experiment config file.")
flags.DEFINE_string("workdir", "runs/decoupling", "Report folder: tables, figures, summary.md.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()  # on a multi-host launch every process measures; process 0 writes
    try:
        validate(FLAGS.config)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    out = run(FLAGS.config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/summary.md ({out['seconds']} s)")


if __name__ == "__main__":
    app.run(main)
