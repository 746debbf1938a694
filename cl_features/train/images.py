"""Image experiments on the shared loop: SimCLR and supervised training, kNN monitor, offline linear probe.

config -> data (TFDS / image folder / shipped photos, grain) -> augment (on device) -> encoder + heads ->
NT-Xent or cross-entropy -> `loop.fit` -> kNN / online probe during training -> linear probe after.
`run(config, workdir)` writes metrics.jsonl (+ TensorBoard events), summary.json and run_info.json into `workdir`
(process 0) and returns the summary.

The SimCLR step (one `jax.jit`, `train.steps_per_call` steps per call):
  * example i of the global batch draws its views from fold_in(step_key, i), i its position in the
    single-process global batch (`global_example_ids`), so the views do not depend on the device or
    process count;
  * one encoder call on both views concatenated: BatchNorm statistics over 2 x the global batch (under
    jit with a sharded batch the mean is over the global array; the compiler adds the all-reduce);
  * NT-Xent over both views, every other example of the global batch a negative;
  * an online linear classifier on stop_gradient(features), both views, its cross-entropy added to the
    loss (no gradient reaches the encoder); its test accuracy is measured with the kNN monitor.
Supervised: one augmented view (`augment.set`, e.g. crop_flip), cross-entropy through the same encoder.

Optimiser (optim.make_optimizer): lr = base_learning_rate * global_batch / 256 ('linear'; 'sqrt':
base * sqrt(global_batch); 'none'), linear warmup then cosine decay to 0; weight decay and (LARS) the
trust ratio apply to conv / linear kernels only: BatchNorm scales and biases and every bias are
excluded (`decay_mask`), unless `train.decay_bn_and_bias`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from cl_features import jsonio, objectives
from cl_features.augment import images as aug
from cl_features.config_checks import is_int as _is_int
from cl_features.config_checks import require as _require
from cl_features.data import images as data_images
from cl_features.data import photos
from cl_features.measure import knn, linear_probe
from cl_features.models import heads, resnet
from cl_features.report import run_info
from cl_features.train import checkpoint, loop, optim, resumable
from cl_features.train import mesh as mesh_lib
from cl_features.train.metrics_log import MetricsLog

TASKS = ("simclr", "supervised")
SOURCES = ("tfds", "folder", "photos")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
LR_SCALINGS = ("linear", "sqrt", "none")
PRNG_IMPLS = ("rbg", "threefry2x32")  # for the initial weights; rbg compiles much faster on CPU
SUMMARY_KEYS = ("knn_acc", "linear_probe_acc", "online_probe_acc", "test_acc", "final_loss", "steps", "seconds")
# Config fields a resumed run may change: frequencies, steps, devices (checkpoint module), evaluation, where the
# data lives, and how the steps of a call are compiled.
RESUME_MUTABLE_FIELDS = checkpoint.MUTABLE_FIELDS + ("train.epochs", "train.unroll", "eval", "probe", "data.data_dir")
# Offsets folded into the seed so every random stream is distinct and reproducible.
_INIT_STREAM, _TRAIN_STREAM, _PROBE_STREAM, _SUBSET_STREAM = 1, 2, 3, 4


# ----------------------------------------------------------------------------------------------- config


def augment_fields(set_name: str = "simclr", **overrides) -> ml_collections.ConfigDict:
    """`config.augment`: a named set plus per-op overrides, every override None (= the set's value).

    augment_fields("simclr") has fields `set` and `<op>.<field>` for every op field of
    `cl_features.augment.images` (crop.scale, color_jitter.strength, blur.prob, ...), so
    `--config.augment.set=crop --config.augment.crop.scale="(0.2,1.0)"` works on the command line.
    `overrides` are dotted names with values, e.g. `**{"color_jitter.strength": 1.0}`.
    """
    c = ml_collections.ConfigDict({"set": set_name})
    for op, fields in aug.default_config().items():
        c[op] = ml_collections.ConfigDict()
        for field, value in fields.items():
            kind = tuple if isinstance(value, (tuple, list)) else type(value)
            c[op][field] = ml_collections.config_dict.placeholder(kind)
    for dotted, value in overrides.items():
        op, field = dotted.split(".")
        c[op][field] = value
    return c


def resolve_augment(augment: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """named_set(augment.set) with every non-None override applied; validated."""
    cfg = aug.named_set(augment.set)
    for op in aug.default_config():
        for field, value in augment[op].items():
            if value is not None:
                cfg[op][field] = tuple(value) if isinstance(value, list) else value
    aug.validate(cfg)
    return cfg


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _triple(v) -> bool:
    return v is None or (isinstance(v, (tuple, list)) and len(v) == 3 and all(_is_num(x) for x in v))


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any data is read or anything compiled; returns a copy."""
    c = ml_collections.ConfigDict(config.to_dict())
    _require(_is_int(c.seed) and c.seed >= 0, "seed", "an int >= 0", c.seed)
    _require(c.task in TASKS, "task", f"one of {TASKS}", c.task)
    d = c.data
    _require(d.source in SOURCES, "data.source", f"one of {SOURCES}", d.source)
    if d.source == "tfds":
        _require(isinstance(d.name, str) and d.name, "data.name", "a TFDS dataset name", d.name)
        for f in ("train_split", "test_split"):
            _require(isinstance(d[f], str) and d[f], f"data.{f}", "a split name", d[f])
    if d.source == "folder":
        for f in ("folder_train", "folder_test"):
            _require(isinstance(d[f], str) and d[f], f"data.{f}", "a directory of class sub-directories", d[f])
    if d.source == "photos":
        _require(
            _is_int(d.photos_crops_per_image) and d.photos_crops_per_image >= 1,
            "data.photos_crops_per_image",
            "an int >= 1",
            d.photos_crops_per_image,
        )
        _require(
            _is_num(d.photos_max_zoom) and d.photos_max_zoom >= 1,
            "data.photos_max_zoom",
            "a number >= 1",
            d.photos_max_zoom,
        )
    _require(_is_int(d.image_size) and d.image_size >= 1, "data.image_size", "an int >= 1", d.image_size)
    _require(
        d.num_classes is None or (_is_int(d.num_classes) and d.num_classes >= 2),
        "data.num_classes",
        "None (from the dataset) or an int >= 2",
        d.num_classes,
    )
    _require(_triple(d.mean), "data.mean", "None or 3 numbers (per-channel mean of [0, 1] pixels)", d.mean)
    _require(_triple(d.std) and (d.std is None or min(d.std) > 0), "data.std", "None or 3 numbers > 0", d.std)
    _require((d.mean is None) == (d.std is None), "data.std", "set together with data.mean", d.std)
    _require(_is_int(d.worker_count) and d.worker_count >= 0, "data.worker_count", "an int >= 0", d.worker_count)

    m = c.model
    _require(m.encoder in resnet.ENCODER_NAMES, "model.encoder", f"one of {resnet.ENCODER_NAMES}", m.encoder)
    _require(m.dtype in DTYPES, "model.dtype", f"one of {tuple(DTYPES)}", m.dtype)
    _require(_is_int(m.input_size) and m.input_size >= 1, "model.input_size", "an int >= 1", m.input_size)
    _require(
        m.head_hidden_dim is None or (_is_int(m.head_hidden_dim) and m.head_hidden_dim >= 1),
        "model.head_hidden_dim",
        "None (the encoder's feature dim) or an int >= 1",
        m.head_hidden_dim,
    )
    _require(_is_int(m.head_out_dim) and m.head_out_dim >= 1, "model.head_out_dim", "an int >= 1", m.head_out_dim)
    _require(_is_int(m.head_layers) and m.head_layers >= 1, "model.head_layers", "an int >= 1", m.head_layers)
    _require(isinstance(m.head_bn, bool), "model.head_bn", "a bool", m.head_bn)
    _require(m.init_prng_impl in PRNG_IMPLS, "model.init_prng_impl", f"one of {PRNG_IMPLS}", m.init_prng_impl)

    _require(
        _is_num(c.objective.temperature) and c.objective.temperature > 0,
        "objective.temperature",
        "> 0",
        c.objective.temperature,
    )
    _require(isinstance(c.objective.online_probe, bool), "objective.online_probe", "a bool", c.objective.online_probe)
    _require(c.augment.set in aug.NAMED_SETS, "augment.set", f"one of {aug.NAMED_SETS}", c.augment.set)
    resolve_augment(c.augment)  # raises "augment.<op>.<field> must be ..."

    t = c.train
    _require(_is_int(t.batch_size) and t.batch_size >= 2, "train.batch_size", "an int >= 2", t.batch_size)
    resumable.check_fields(c)
    if t.steps is None:
        _require(_is_num(t.epochs) and t.epochs > 0, "train.epochs", "> 0 (or set train.steps)", t.epochs)
    _require(t.optimizer in optim.OPTIMIZERS, "train.optimizer", f"one of {optim.OPTIMIZERS}", t.optimizer)
    _require(
        _is_num(t.base_learning_rate) and t.base_learning_rate > 0,
        "train.base_learning_rate",
        "> 0",
        t.base_learning_rate,
    )
    _require(
        t.learning_rate_scaling in LR_SCALINGS,
        "train.learning_rate_scaling",
        f"one of {LR_SCALINGS}",
        t.learning_rate_scaling,
    )
    _require(t.schedule in optim.SCHEDULES, "train.schedule", f"one of {optim.SCHEDULES}", t.schedule)
    _require(_is_num(t.warmup_epochs) and t.warmup_epochs >= 0, "train.warmup_epochs", ">= 0", t.warmup_epochs)
    _require(_is_num(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", ">= 0", t.weight_decay)
    _require(_is_num(t.momentum) and 0 <= t.momentum < 1, "train.momentum", "in [0, 1)", t.momentum)
    _require(isinstance(t.decay_bn_and_bias, bool), "train.decay_bn_and_bias", "a bool", t.decay_bn_and_bias)
    _require(
        t.unroll is None or isinstance(t.unroll, bool), "train.unroll", "None (auto: True on CPU) or a bool", t.unroll
    )

    e = c.eval
    _require(
        _is_int(e.every_steps) and e.every_steps >= 0 and e.every_steps % t.log_every == 0,
        "eval.every_steps",
        f"0 (at the end only) or a multiple of train.log_every ({t.log_every})",
        e.every_steps,
    )
    _require(_is_int(e.knn_k) and e.knn_k >= 1, "eval.knn_k", "an int >= 1", e.knn_k)
    _require(_is_num(e.knn_temperature) and e.knn_temperature > 0, "eval.knn_temperature", "> 0", e.knn_temperature)
    _require(_is_int(e.batch_size) and e.batch_size >= 1, "eval.batch_size", "an int >= 1", e.batch_size)
    _require(
        e.train_examples is None or (_is_int(e.train_examples) and e.train_examples >= 1),
        "eval.train_examples",
        "None (the whole train split) or an int >= 1",
        e.train_examples,
    )
    _require(_is_num(e.crop_fraction) and 0 < e.crop_fraction <= 1, "eval.crop_fraction", "in (0, 1]", e.crop_fraction)
    _require(isinstance(e.at_init, bool), "eval.at_init", "a bool", e.at_init)
    _require(isinstance(e.cache, bool), "eval.cache", "a bool", e.cache)

    p = c.probe
    _require(isinstance(p.enabled, bool), "probe.enabled", "a bool", p.enabled)
    _require(p.method in linear_probe.METHODS, "probe.method", f"one of {linear_probe.METHODS}", p.method)
    l2 = p.l2 if isinstance(p.l2, (tuple, list)) else (p.l2,)
    _require(
        len(l2) >= 1 and all(_is_num(v) and v >= 0 for v in l2), "probe.l2", "a number >= 0 or a list of them", p.l2
    )
    _require(
        _is_num(p.val_fraction) and (len(l2) == 1 or 0 < p.val_fraction < 1),
        "probe.val_fraction",
        "in (0, 1) when probe.l2 lists several values",
        p.val_fraction,
    )
    _require(_is_int(p.max_iter) and p.max_iter >= 1, "probe.max_iter", "an int >= 1", p.max_iter)
    return c


# ------------------------------------------------------------------------------------------------- data


class Subset:
    """`source` restricted to `indices` (a random-access source itself)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.source[int(self.indices[i])]

    def __repr__(self) -> str:
        return f"Subset({self.source!r}, {len(self.indices)} records)"


@dataclasses.dataclass
class ImageData:
    train: Any  # random-access source of the train split
    test: Any
    num_classes: int


def open_data(c: ml_collections.ConfigDict) -> ImageData:
    """The train and test sources named by `config.data` (missing TFDS data: one-line FileNotFoundError)."""
    d = c.data
    if d.source == "tfds":
        train = data_images.open_source(d.name, d.train_split, d.data_dir)
        test = data_images.open_source(d.name, d.test_split, d.data_dir)
        num_classes = d.num_classes
        if num_classes is None:
            try:
                num_classes = int(train.dataset_info.features["label"].num_classes)
            except (AttributeError, KeyError) as e:
                raise ValueError(
                    f"config.data.num_classes must be set: {d.name!r} has no label classes ({type(e).__name__})"
                ) from None
    elif d.source == "folder":
        train = data_images.ImageFolderSource(d.folder_train, d.image_size)
        test = data_images.ImageFolderSource(d.folder_test, d.image_size)
        if test.class_names != train.class_names:
            raise ValueError(
                f"config.data.folder_test must have the class directories of data.folder_train "
                f"{train.class_names}, got {test.class_names}"
            )
        num_classes = d.num_classes or len(train.class_names)
    else:
        kw = dict(
            size=d.image_size, crops_per_image=d.photos_crops_per_image, seed=c.seed, max_zoom=float(d.photos_max_zoom)
        )
        train, test = photos.PhotoCropsSource("train", **kw), photos.PhotoCropsSource("test", **kw)
        num_classes = d.num_classes or len(photos.PHOTO_NAMES)
    if len(train) < c.train.batch_size:
        raise ValueError(f"config.train.batch_size={c.train.batch_size} exceeds the {len(train)} train examples")
    return ImageData(train, test, int(num_classes))


# --------------------------------------------------------------------------------------------- schedule


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps: int
    warmup_steps: int
    steps_per_epoch: float
    learning_rate: float  # peak, after batch-size scaling


def learning_rate(base: float, batch_size: int, scaling: str) -> float:
    """Peak learning rate: base * batch / 256 (linear), base * sqrt(batch) (sqrt), or base (none)."""
    if scaling not in LR_SCALINGS:
        raise ValueError(f"train.learning_rate_scaling must be one of {LR_SCALINGS}, got {scaling!r}")
    return {"linear": base * batch_size / 256, "sqrt": base * math.sqrt(batch_size), "none": base}[scaling]


def make_schedule(c: ml_collections.ConfigDict, num_train: int) -> Schedule:
    """Steps (train.steps, or train.epochs rounded up to a multiple of steps_per_call), warmup, peak lr."""
    t = c.train
    per_epoch = num_train / t.batch_size
    if t.steps is not None:
        steps = t.steps
    else:
        steps = max(1, math.ceil(t.epochs * per_epoch))
        steps = -(-steps // t.steps_per_call) * t.steps_per_call
    warmup = int(round(t.warmup_epochs * per_epoch))
    if t.schedule == "warmup_cosine" and warmup >= steps:
        raise ValueError(
            f"config.train.warmup_epochs={t.warmup_epochs} gives {warmup} warmup steps, not fewer than "
            f"the run's {steps} steps ({per_epoch:g} steps per epoch)"
        )
    warmup = min(warmup, steps)
    return Schedule(
        steps, warmup, per_epoch, learning_rate(t.base_learning_rate, t.batch_size, t.learning_rate_scaling)
    )


def decay_mask(params) -> Any:
    """True for conv / linear kernels; False for BatchNorm scales and biases and every bias."""

    def is_kernel(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return bool(names) and names[-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(c: ml_collections.ConfigDict, schedule: Schedule):
    lr = optim.schedule(
        learning_rate=schedule.learning_rate,
        kind=c.train.schedule,
        steps=schedule.steps,
        warmup_steps=schedule.warmup_steps,
    )
    mask = None if c.train.decay_bn_and_bias else decay_mask
    return optim.make_optimizer(
        name=c.train.optimizer,
        learning_rate=lr,
        momentum=c.train.momentum,
        weight_decay=c.train.weight_decay,
        weight_decay_mask=mask,
        lars_trust_mask=mask,
    )


# ------------------------------------------------------------------------------------------------ model


class ImageModel(nnx.Module):
    """encoder: images -> h [batch, feat_dim]; head: h -> z (SimCLR only); classifier: h -> logits.

    For SimCLR the classifier is the online probe (fed stop_gradient(h)); for supervised training it is
    the task head. Either head may be None.
    """

    def __init__(self, encoder: nnx.Module, head: nnx.Module | None, classifier: nnx.Module | None):
        self.encoder, self.head, self.classifier = encoder, head, classifier


def make_model(c: ml_collections.ConfigDict, num_classes: int) -> ImageModel:
    """The model at its seeded initialisation, built in one compiled call (eager init compiles every op)."""

    def build():
        key = jax.random.fold_in(jax.random.key(c.seed, impl=c.model.init_prng_impl), _INIT_STREAM)
        rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
        dtype, m = DTYPES[c.model.dtype], c.model
        encoder = resnet.build_encoder(m.encoder, rngs=rngs, dtype=dtype)
        feat = encoder.feat_dim
        head, classifier = None, None
        if c.task == "simclr":
            head = heads.ProjectionHead(
                feat, m.head_hidden_dim or feat, m.head_out_dim, m.head_layers, use_bn=m.head_bn, rngs=rngs, dtype=dtype
            )
            if c.objective.online_probe:
                classifier = heads.LinearClassifier(feat, num_classes, rngs=rngs)
        else:
            classifier = heads.LinearClassifier(feat, num_classes, rngs=rngs, zero_init=False)
        return ImageModel(encoder, head, classifier)

    return nnx.jit(build)()


# ----------------------------------------------------------------------------------------- train step


def unroll(c: ml_collections.ConfigDict) -> bool:
    """train.unroll, or None -> True on CPU (XLA:CPU runs convolutions in a while loop ~20x slower)."""
    return c.train.unroll if c.train.unroll is not None else jax.default_backend() == "cpu"


def global_example_ids(global_batch: int, process_count: int) -> np.ndarray:
    """Row r of the global batch array -> its position in the single-process global batch.

    Process p loads rows j * process_count + p (grain's per-process shards) and puts them at rows
    p * b + j of the global array (b = global_batch / process_count, processes' devices in mesh order).
    """
    b = global_batch // process_count
    r = np.arange(global_batch)
    return ((r % b) * process_count + r // b).astype(np.uint32)


def normalize(x: jax.Array, mean, std) -> jax.Array:
    """x: [..., 3] in [0, 1] -> (x - mean) / std per channel (identity when mean is None)."""
    if mean is None:
        return x
    return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def contrast_accuracy(z1: jax.Array, z2: jax.Array) -> jax.Array:
    """Fraction of the 2N anchors whose most similar other embedding (cosine) is their partner view."""
    z = jnp.concatenate([z1, z2]).astype(jnp.float32)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    n = z1.shape[0]
    sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, z @ z.T)
    partner = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return jnp.mean(jnp.argmax(sim, axis=1) == partner)


def make_loss_fn(c: ml_collections.ConfigDict, mesh):
    """loss_fn(model, batch {'image': uint8 [B, H, W, 3], 'label': [B]}, key, step) for `loop.make_step_fn`."""
    aug_cfg = resolve_augment(c.augment).to_dict()
    size, tau = c.model.input_size, c.objective.temperature
    mean, std = c.data.mean, c.data.std
    ids_np = global_example_ids(c.train.batch_size, jax.process_count())
    ids_sharding = mesh_lib.batch_sharding(mesh)

    def example_ids():
        return jax.lax.with_sharding_constraint(jnp.asarray(ids_np), ids_sharding)

    def simclr(model, batch, key, step):
        del step
        images, labels = batch["image"], batch["label"]
        n = images.shape[0]
        v1, v2 = aug.two_views(key, images, aug_cfg, size, example_ids=example_ids())
        h = model.encoder(normalize(jnp.concatenate([v1, v2]), mean, std))
        z = model.head(h)
        contrastive = objectives.nt_xent(z[:n], z[n:], tau)
        metrics = {"contrastive_loss": contrastive, "contrast_acc": contrast_accuracy(z[:n], z[n:])}
        loss = contrastive
        if model.classifier is not None:
            logits = model.classifier(jax.lax.stop_gradient(h).astype(jnp.float32))
            both = jnp.concatenate([labels, labels])
            probe_loss = objectives.cross_entropy(logits, both)
            metrics["online_probe_loss"] = probe_loss
            metrics["online_probe_train_acc"] = jnp.mean(jnp.argmax(logits, axis=1) == both)
            loss = loss + probe_loss
        return loss, metrics

    def supervised(model, batch, key, step):
        del step
        images, labels = batch["image"], batch["label"]
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids())
        x = aug.augment_images(keys, images, aug_cfg, size)
        logits = model.classifier(model.encoder(normalize(x, mean, std)).astype(jnp.float32))
        return objectives.cross_entropy(logits, labels), {"train_acc": jnp.mean(jnp.argmax(logits, 1) == labels)}

    return simclr if c.task == "simclr" else supervised


# ------------------------------------------------------------------------------------------- evaluation


def eval_preprocess(images: jax.Array, c: ml_collections.ConfigDict) -> jax.Array:
    """uint8 [B, S, S, 3] -> float [B, input_size, input_size, 3]: centre crop (eval.crop_fraction), resize,
    normalise."""
    x = images.astype(jnp.float32) / 255.0
    s, out = x.shape[1], c.model.input_size
    side = max(1, int(round(c.eval.crop_fraction * s)))
    if side != s or s != out:
        top = (s - side) // 2
        x = jax.vmap(lambda im: aug.resized_crop(im, (top, top, side, side), out))(x)
    return normalize(x, c.data.mean, c.data.std)


class Evaluator:
    """Frozen features (BatchNorm in inference mode) of the kNN bank and the test split, and the scores.

    Eval batches are read once per process (its grain shard; a process-count remainder is dropped) and,
    with eval.cache, kept in host memory. The feature function returns replicated arrays, so every
    process gets all features (and they are in the same order for features and labels).
    """

    def __init__(self, c: ml_collections.ConfigDict, graphdef, data: ImageData, mesh):
        self.c, self.mesh, self.num_classes = c, mesh, data.num_classes
        bank = data.train
        if c.eval.train_examples is not None and c.eval.train_examples < len(bank):
            rng = np.random.default_rng([c.seed, _SUBSET_STREAM])
            bank = Subset(bank, np.sort(rng.permutation(len(bank))[: c.eval.train_examples]))
        self.sources = {"train": bank, "test": data.test}
        self._cache: dict[str, list] = {}
        self.local_batch = c.eval.batch_size // jax.process_count()
        self.sharding = mesh_lib.batch_sharding(mesh)
        has_classifier = c.task == "supervised" or c.objective.online_probe

        def features(params, rest, images):
            model = nnx.merge(graphdef, params, rest)
            model.eval()
            h = model.encoder(eval_preprocess(images, c)).astype(jnp.float32)
            preds = jnp.argmax(model.classifier(h), axis=1) if has_classifier else jnp.zeros(h.shape[0], jnp.int32)
            return h, preds

        repl = mesh_lib.replicated(mesh)
        self._fn = jax.jit(features, in_shardings=(repl, repl, self.sharding), out_shardings=(repl, repl))
        self.has_classifier = has_classifier

    def _local_batches(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(images uint8 [b, S, S, 3], labels [b], valid bool [b]) per local batch, the last one padded."""
        if split in self._cache:
            yield from self._cache[split]
            return
        source = self.sources[split]
        loader = data_images.make_loader(
            source,
            global_batch_size=self.local_batch * jax.process_count(),
            seed=0,
            shuffle=False,
            num_epochs=1,
            image_size=self.c.data.image_size,
            worker_count=self.c.data.worker_count,
            drop_remainder=False,
        )
        kept = []
        for batch in loader:
            n = len(batch["label"])
            pad = self.local_batch - n
            item = (
                np.pad(batch["image"], ((0, pad), (0, 0), (0, 0), (0, 0))),
                np.pad(batch["label"], (0, pad)),
                np.arange(self.local_batch) < n,
            )
            if self.c.eval.cache:
                kept.append(item)
            yield item
        if self.c.eval.cache:
            self._cache[split] = kept

    def _global(self, x: np.ndarray) -> jax.Array:
        if jax.process_count() == 1:
            return jax.device_put(x, self.sharding)
        return jax.make_array_from_process_local_data(self.sharding, x)

    def features(self, state: loop.TrainState, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features float32 [n, feat_dim], labels [n], classifier predictions [n]) of `split`."""
        feats, labels, preds = [], [], []
        for images, y, valid in self._local_batches(split):
            h, p = self._fn(state.params, state.rest, self._global(images))
            keep = self._global_host(valid)
            feats.append(np.asarray(h)[keep])
            preds.append(np.asarray(p)[keep])
            labels.append(np.asarray(self._global_host(y))[keep])
        return np.concatenate(feats), np.concatenate(labels), np.concatenate(preds)

    def _global_host(self, x: np.ndarray) -> np.ndarray:
        """The global batch's copy of a per-process array (rows in the global array's order)."""
        if jax.process_count() == 1:
            return x
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    def evaluate(self, state: loop.TrainState) -> tuple[dict, dict]:
        """kNN accuracy (and online probe / classifier test accuracy); also returns the features."""
        c = self.c
        train_f, train_y, _ = self.features(state, "train")
        test_f, test_y, test_p = self.features(state, "test")
        out = {
            "knn_acc": knn.knn_accuracy(
                train_f, train_y, test_f, test_y, self.num_classes, k=c.eval.knn_k, temperature=c.eval.knn_temperature
            )
        }
        if self.has_classifier:
            out["online_probe_acc" if c.task == "simclr" else "test_acc"] = float(np.mean(test_p == test_y))
        return out, {"train": (train_f, train_y), "test": (test_f, test_y)}

    def probe(self, feats: dict) -> dict:
        p = self.c.probe
        (train_f, train_y), (test_f, test_y) = feats["train"], feats["test"]
        res = linear_probe.linear_probe(
            train_f,
            train_y,
            test_f,
            test_y,
            self.num_classes,
            method=p.method,
            l2=list(p.l2) if isinstance(p.l2, (tuple, list)) else p.l2,
            val_fraction=p.val_fraction,
            max_iter=p.max_iter,
            seed=self.c.seed,
        )
        return {
            "linear_probe_acc": res["accuracy"],
            "linear_probe_train_acc": res["train_accuracy"],
            "linear_probe_l2": res["l2"],
        }


# -------------------------------------------------------------------------------------------------- run


class Setup(NamedTuple):
    """What training a validated image config starts from."""

    data: ImageData
    schedule: Schedule
    graphdef: Any
    state: loop.TrainState  # initial, placed on the mesh
    step_fn: loop.StepFn
    batches: Iterator  # the train split's grain iterator (checkpointed with the state)


def make_mesh(c: ml_collections.ConfigDict):
    mesh = mesh_lib.make_mesh(c.train.num_devices)
    mesh_lib.check_batch_size(c.train.batch_size, mesh)
    mesh_lib.check_batch_size(c.eval.batch_size, mesh, field="eval.batch_size")
    if c.train.batch_size % jax.process_count() or c.eval.batch_size % jax.process_count():
        raise ValueError(
            f"config.train.batch_size and config.eval.batch_size must be divisible by the "
            f"{jax.process_count()} processes"
        )
    return mesh


def prepare(c: ml_collections.ConfigDict, mesh, data: ImageData | None = None) -> Setup:
    """Data (opened unless given), schedule, model, optimizer, initial state, compiled step and train batches."""
    data = data or open_data(c)
    schedule = make_schedule(c, len(data.train))
    tx = make_optimizer(c, schedule)
    train_seed = int(jax.random.randint(jax.random.fold_in(jax.random.key(c.seed), _TRAIN_STREAM), (), 0, 2**31 - 1))
    graphdef, state = loop.init_state(make_model(c, data.num_classes), tx, train_seed)
    step_fn = loop.make_step_fn(
        graphdef,
        tx,
        make_loss_fn(c, mesh),
        mesh=mesh,
        steps_per_call=c.train.steps_per_call,
        host_batches=True,
        unroll=unroll(c),
    )
    loader = data_images.make_loader(
        data.train,
        global_batch_size=c.train.batch_size,
        seed=c.seed,
        image_size=c.data.image_size,
        worker_count=c.data.worker_count,
    )
    return Setup(data, schedule, graphdef, loop.place_state(state, mesh), step_fn, iter(loader))


def train(
    c: ml_collections.ConfigDict,
    workdir: str | None,
    *,
    data: ImageData | None = None,
    monitor: bool = True,
    verbose: bool = True,
) -> tuple[dict, ImageModel]:
    """Trains a validated config in `workdir` (resumed from its checkpoints); returns (results, trained model).

    monitor: the kNN / online-probe evaluation (eval.*), the initial scores (eval.at_init) and the offline probe
    (probe.*); without it only the training rows are logged.
    """
    t0 = time.perf_counter()
    mesh = make_mesh(c)
    setup = prepare(c, mesh, data)
    steps = setup.schedule.steps
    evaluator = Evaluator(c, setup.graphdef, setup.data, mesh) if monitor else None
    last_eval: dict = {}

    def on_log(step: int, st: loop.TrainState) -> dict:
        if step == 0:
            scores, feats = evaluator.evaluate(st)
            init = {"knn_acc": scores["knn_acc"]}
            if c.probe.enabled:
                init["linear_probe_acc"] = evaluator.probe(feats)["linear_probe_acc"]
            return init
        every = c.eval.every_steps
        if step == steps or (every and step % every == 0):
            scores, feats = evaluator.evaluate(st)
            last_eval.update(step=step, scores=scores, feats=feats)
            return scores
        return {}

    out = resumable.train(
        workdir,
        c.to_dict(),
        setup.step_fn,
        setup.state,
        mesh=mesh,
        total_steps=steps,
        mutable_fields=RESUME_MUTABLE_FIELDS,
        batch_iter=setup.batches,
        on_log=on_log if monitor else None,
        log_initial=monitor and c.eval.at_init,
        name=c.task,
        verbose=verbose,
    )
    results = {f"{k}_init": v for k, v in out.initial_row.items()}
    if monitor:
        if last_eval.get("step") != steps:  # a finished run started again: measure, log nothing
            last_eval.update(zip(("scores", "feats"), evaluator.evaluate(out.state)), step=steps)
        results.update(last_eval["scores"])
        if c.probe.enabled:
            probe = evaluator.probe(last_eval["feats"])
            results.update(probe)
            if out.history and workdir:
                with MetricsLog(os.path.join(workdir, "metrics.jsonl")) as log:
                    log.write(steps, {k: probe[k] for k in ("linear_probe_acc", "linear_probe_l2")})
    final = out.last_row or {}
    results["final_loss"] = final.get("contrastive_loss", final.get("loss", float("nan")))
    results["steps"] = steps
    results["resumed_from"] = out.start
    results["images_per_second"] = (steps - out.start) * c.train.batch_size / out.seconds if steps > out.start else None
    results["seconds"] = round(time.perf_counter() - t0, 2)
    summary = {
        "task": c.task,
        "num_train": len(setup.data.train),
        "num_test": len(setup.data.test),
        "num_classes": setup.data.num_classes,
        "learning_rate": setup.schedule.learning_rate,
        "warmup_steps": setup.schedule.warmup_steps,
        **results,
    }
    return summary, loop.merge(setup.graphdef, out.state)


def run(
    config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True, data: ImageData | None = None
) -> dict:
    """Trains, monitors and probes one image model; writes the workdir (process 0); returns the summary.

    With a workdir the run checkpoints (TrainState and the grain iterator of every process) into
    <workdir>/checkpoints every checkpoint.every steps and at the end; started again in the same workdir it
    resumes from the newest checkpoint (the metrics log is cut back to it) and continues with exactly the
    batches and numbers an uninterrupted run would have had. SIGTERM saves at the next step boundary and raises
    checkpoint.Preempted; a changed config raises checkpoint.ConfigMismatch (a ValueError) naming the fields.
    `data`: the sources from `open_data(config)` if the caller opened them already.
    """
    c = validate(config)
    if workdir:
        run_info.write_run_info(workdir, c, kind="images")  # process 0 only
    summary, _ = train(c, workdir, data=data, verbose=verbose)
    summary["config"] = c.to_dict()
    if verbose:
        _print(f"[{c.task}] " + "  ".join(f"{k}={summary[k]:.4g}" for k in SUMMARY_KEYS if k in summary))
    if workdir and jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        jsonio.dump(summary, os.path.join(workdir, "summary.json"))
    return summary


def restore(workdir: str, subdir: str = "checkpoints") -> tuple[ml_collections.ConfigDict, ImageModel, int, dict]:
    """(config, model, step, summary) of an image-experiment workdir at its newest checkpoint.

    The config comes from summary.json (a finished run) or else run_info.json (written at the start, so a run
    stopped early can be read at its last checkpoint); the checkpointer checks it against the checkpoint's own
    and falls back past a corrupt checkpoint.
    """
    path, summary = os.path.join(workdir, "summary.json"), {}
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
    raw = summary.get("config") or (run_info.read_run_info(workdir) or {}).get("config")
    if raw is None:
        raise FileNotFoundError(
            f"{workdir!r} has no summary.json or {run_info.FILENAME} (not an image-experiment workdir)"
        )
    c = validate(ml_collections.ConfigDict(raw))
    if "num_classes" in summary and "num_train" in summary:
        num_classes, num_train = int(summary["num_classes"]), int(summary["num_train"])
    else:
        data = open_data(c)
        num_classes, num_train = data.num_classes, len(data.train)
    tx = make_optimizer(c, make_schedule(c, num_train))
    graphdef, state = loop.init_state(make_model(c, num_classes), tx, 0)
    directory = os.path.join(workdir, subdir)
    restored = None
    if os.path.isdir(directory):
        with checkpoint.Checkpointer(directory, config=c.to_dict(), mutable_fields=RESUME_MUTABLE_FIELDS) as ck:
            restored = ck.restore(state)
    if restored is None:
        raise FileNotFoundError(f"no checkpoint under {os.path.abspath(directory)!r}")
    return c, loop.merge(graphdef, restored.state), restored.step, summary


def _print(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)
