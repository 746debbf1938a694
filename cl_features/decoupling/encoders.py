"""The encoders the decoupling study measures (config.models), once per seed of models.seeds (seed, seed + 1, ...).

models.source: none | init (models.image_config at its seeded initialisation) | train (one SimCLR encoder per
models.train_sets entry and a supervised one, in <workdir>/models/<name>/seed<s>, resumed from there) | checkpoints
(the newest of each workdir in models.checkpoints); models.include_init adds the initial one. Image configs read
the study's images (fit_split as their train split, measure_split as their test split).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import ml_collections
from flax import nnx

from cl_features import cli
from cl_features.augment import image_ops, image_sets
from cl_features.config_checks import at_least, check, one_of, require, split_list
from cl_features.image_training import network, trainer

SOURCES = ("none", "init", "checkpoints", "train")
_CONFIG_NAME = "the module name of a config in experiments/configs/ (e.g. photos_simclr_tiny)"


def check_fields(c: ml_collections.ConfigDict) -> None:
    s = c.models
    one_of(c, "models.source", SOURCES)
    if s.source in ("init", "train") or s.include_init:
        check(c, "models.image_config", str.isidentifier, _CONFIG_NAME)
    if s.source == "checkpoints":
        checkpoint_dirs(c)
        check(c, "models.checkpoint_subdir", bool, "a directory name inside each image-experiment workdir")
    if s.source == "train":
        split_list(c, "models.train_sets", image_sets.NAMED_SETS, allow_empty=bool(s.supervised_set))
        allowed = ("", *image_sets.NAMED_SETS)
        check(c, "models.supervised_set", lambda v: v in allowed, f"'' or one of {image_sets.NAMED_SETS}")
        if s.supervised_set:
            check(c, "models.supervised_image_config", str.isidentifier, _CONFIG_NAME)
        if s.train_steps is not None:
            at_least(c, 1, "models.train_steps")
    at_least(c, 1, "models.seeds")


def checkpoint_dirs(c: ml_collections.ConfigDict) -> dict[str, str]:
    """models.checkpoints 'a/b/crop,simclr=runs/x' -> {'crop': 'a/b/crop', 'simclr': 'runs/x'} (name: the given one
    or the directory's basename)."""
    out: dict[str, str] = {}
    for item in split_list(c, "models.checkpoints"):
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        name = name or os.path.basename(os.path.normpath(path))
        ok = bool(name) and bool(path) and name not in out
        require(ok, "models.checkpoints", "a comma list of DIR or NAME=DIR with distinct names", c.models.checkpoints)
        out[name] = path
    return out


@dataclasses.dataclass
class Encoder:
    """A model to measure: the encoder module and how images reach it."""

    name: str
    seed: int
    train_set: str  # the augmentation set it was trained with, 'supervised:<set>', or 'init'
    module: nnx.Module
    input_size: int
    mean: tuple | None  # per-channel normalisation after augmentation (None: raw [0, 1])
    std: tuple | None
    scores: dict = dataclasses.field(default_factory=dict)  # numbers that came with it (e.g. training's kNN)

    def preprocess(self) -> Callable[[jax.Array], jax.Array]:
        """[B, H, W, 3] float in [0, 1] -> the encoder's input: resized to input_size (if needed), normalised."""
        size, mean, std = self.input_size, self.mean, self.std

        def fn(x):
            if x.shape[1] != size or x.shape[2] != size:
                box = (0, 0, x.shape[1], x.shape[2])
                x = jax.vmap(lambda im: image_ops.resized_crop(im, box, size))(x)
            return network.normalize(x, mean, std)

        return fn


def _encoder(name: str, ic: ml_collections.ConfigDict, module: nnx.Module, scores=None, train_set=None) -> Encoder:
    train_set = train_set or (ic.augment.set if ic.task == "simclr" else f"supervised:{ic.augment.set}")
    mean = None if ic.data.mean is None else tuple(ic.data.mean)
    std = None if ic.data.std is None else tuple(ic.data.std)
    return Encoder(name, int(ic.seed), train_set, module, int(ic.model.input_size), mean, std, dict(scores or {}))


def seeds(c: ml_collections.ConfigDict) -> list[int]:
    return [c.seed + i for i in range(c.models.seeds)]


def image_config(name: str) -> ml_collections.ConfigDict:
    """experiments/configs/<name>.py's config (an image experiment's, cl_features/image_training/)."""
    if name not in cli.config_names():
        raise ValueError(f"config.models.image_config must name a config in experiments/configs/, got {name!r}")
    return cli.load_config(name)


def study_image_config(c: ml_collections.ConfigDict, name: str, seed: int) -> ml_collections.ConfigDict:
    """Image config `name` with `seed`, reading the study's images (data.source and its fields, fit_split as its
    train split and measure_split as its test split)."""
    ic = image_config(name)
    ic.seed, d = seed, c.data
    for field in ("source", "name", "data_dir", "folder_train", "folder_test"):
        ic.data[field] = d[field]
    if d.source == "photos":
        ic.data.photos_max_zoom = d.photos_max_zoom
    ic.data.train_split, ic.data.test_split = d.fit_split, d.measure_split
    return ic


def run_config(
    c: ml_collections.ConfigDict, task: str, set_name: str, seed: int | None = None
) -> ml_collections.ConfigDict:
    """The image-experiment config of the `task` encoder with augmentation set `set_name` and `seed` (None: the
    study's), reading the study's images."""
    name = c.models.image_config if task == "simclr" else c.models.supervised_image_config
    ic = study_image_config(c, name, c.seed if seed is None else seed)
    ic.task, ic.augment.set = task, set_name
    if c.models.train_steps is not None:
        ic.train.steps = c.models.train_steps
    return trainer.validate(ic)


def restore_encoder(path: str, name: str, subdir: str = "checkpoints") -> Encoder:
    """The encoder of an image-experiment workdir at its newest checkpoint (image_training.trainer.restore)."""
    try:
        ic, model, step, summary = trainer.restore(path, subdir)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"config.models.checkpoints: {e}") from None
    scores = {f"train/{k}": summary[k] for k in ("knn_acc", "linear_probe_acc", "test_acc") if k in summary}
    return _encoder(name, ic, model.encoder, dict(scores, train_steps=step))


def trained_runs(c: ml_collections.ConfigDict, workdir: str | None) -> list[tuple]:
    """(name, image config, run directory <workdir>/models/<name>/seed<s> or None) of each encoder that
    models.source=train trains, seed by seed."""
    runs = [(n, "simclr", n) for n in split_list(c, "models.train_sets", allow_empty=True)]
    runs += [("supervised", "supervised", c.models.supervised_set)] if c.models.supervised_set else []
    return [
        (n, run_config(c, t, s, seed), os.path.join(workdir, "models", n, f"seed{seed}") if workdir else None)
        for seed in seeds(c)
        for n, t, s in runs
    ]


def initial_encoder(c: ml_collections.ConfigDict, num_classes: int, seed: int) -> Encoder:
    ic = trainer.validate(study_image_config(c, c.models.image_config, seed))
    return _encoder("init", ic, network.make_model(ic, num_classes).encoder, train_set="init")


def load_encoders(
    c: ml_collections.ConfigDict, num_classes: int, workdir: str | None, *, verbose: bool, checked: dict | None = None
) -> list:
    """The encoders to measure, as models.source says (and the initial ones with models.include_init). checked:
    {run directory: resumable.check_resume's answer there}, passed on to the training."""
    s, encoders = c.models, []
    if s.include_init or s.source == "init":
        encoders += [initial_encoder(c, num_classes, seed) for seed in seeds(c)]
    if s.source == "checkpoints":
        encoders += [restore_encoder(path, name, s.checkpoint_subdir) for name, path in checkpoint_dirs(c).items()]
    elif s.source == "train":
        runs = trained_runs(c, workdir)
        for i, (name, ic, sub) in enumerate(runs):
            if verbose:
                print(f"encoder {i + 1}/{len(runs)}: {name} seed {ic.seed} ({ic.task}, {ic.train.steps} steps)")
            # the image experiment's training without its monitoring, resumed from `sub`
            res, model = trainer.train(ic, sub, monitor=False, verbose=verbose, checked=(checked or {}).get(sub))
            if verbose and res["resumed_from"]:
                print(f"encoder {name} seed {ic.seed}: resumed at step {res['resumed_from']} of {res['steps']}")
            scores = {"final_loss": res["final_loss"], "train_steps": res["steps"]}
            encoders.append(_encoder(name, ic, model.encoder, scores))
    return encoders
