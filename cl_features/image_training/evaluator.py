"""Evaluation of an image model (config.eval, probe): frozen features, kNN and online-probe accuracy, linear probe."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from cl_features.augment import image_ops
from cl_features.config_checks import as_tuple, at_least, check, fraction, is_num, one_of, positive
from cl_features.data import loader
from cl_features.image_training.inputs import ImageData
from cl_features.image_training.network import normalize
from cl_features.measure import knn, linear_probe
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib

SUBSET_STREAM = 4  # folded into the seed to draw the kNN bank subset (eval.train_examples)


def check_fields(c: ml_collections.ConfigDict) -> None:
    log_every = c.train.log_every
    every = f"0 (at the end only) or a multiple of train.log_every ({log_every})"
    check(c, "eval.every_steps", lambda v: v >= 0 and v % log_every == 0, every)
    at_least(c, 1, "eval.knn_k", "eval.batch_size", "probe.max_iter")
    positive(c, "eval.knn_temperature")
    check(c, "eval.train_examples", lambda v: v is None or v >= 1, "None (the whole train split) or an int >= 1")
    fraction(c, "eval.crop_fraction")
    one_of(c, "probe.method", linear_probe.METHODS)
    l2 = as_tuple(c.probe.l2)
    check(c, "probe.l2", lambda v: len(l2) >= 1 and all(is_num(x) and x >= 0 for x in l2), "a number >= 0 or a list")
    several = "in (0, 1) when probe.l2 lists several values"
    check(c, "probe.val_fraction", lambda v: len(l2) == 1 or 0 < v < 1, several)


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


def eval_preprocess(images: jax.Array, c: ml_collections.ConfigDict) -> jax.Array:
    """uint8 [B, S, S, 3] -> normalised float [B, input_size, input_size, 3], centre crop eval.crop_fraction."""
    x = images.astype(jnp.float32) / 255.0
    s, out = x.shape[1], c.model.input_size
    side = max(1, int(round(c.eval.crop_fraction * s)))
    if side != s or s != out:
        top = (s - side) // 2
        x = jax.vmap(lambda im: image_ops.resized_crop(im, (top, top, side, side), out))(x)
    return normalize(x, c.data.mean, c.data.std)


class Evaluator:
    """Frozen features (BatchNorm in inference mode) of the kNN bank and the test split, and the scores.

    Each process reads its grain shard (kept in host memory with eval.cache); every process gets all features.
    """

    def __init__(self, c: ml_collections.ConfigDict, graphdef, data: ImageData, mesh):
        self.c, self.num_classes = c, data.num_classes
        bank = data.train
        if c.eval.train_examples is not None and c.eval.train_examples < len(bank):
            rng = np.random.default_rng([c.seed, SUBSET_STREAM])
            bank = Subset(bank, np.sort(rng.permutation(len(bank))[: c.eval.train_examples]))
        self.sources = {"train": bank, "test": data.test}
        self._cache: dict[str, list] = {}
        self.local_batch = c.eval.batch_size // jax.process_count()
        self.sharding = mesh_lib.batch_sharding(mesh)
        self.has_classifier = c.task == "supervised" or c.objective.online_probe

        def features(params, rest, images):
            model = nnx.merge(graphdef, params, rest)
            model.eval()
            h = model.encoder(eval_preprocess(images, c)).astype(jnp.float32)
            preds = jnp.argmax(model.classifier(h), axis=1) if self.has_classifier else jnp.zeros(h.shape[0], jnp.int32)
            return h, preds

        repl = mesh_lib.replicated(mesh)
        self._fn = jax.jit(features, in_shardings=(repl, repl, self.sharding), out_shardings=(repl, repl))

    def _local_batches(self, split: str) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(images uint8 [b, S, S, 3], labels [b], valid bool [b]) per local batch, the last one padded."""
        if split in self._cache:
            yield from self._cache[split]
            return
        batches = loader.make_loader(
            self.sources[split],
            global_batch_size=self.local_batch * jax.process_count(),
            seed=0,
            shuffle=False,
            num_epochs=1,
            image_size=self.c.data.image_size,
            worker_count=self.c.data.worker_count,
            drop_remainder=False,
        )
        kept = []
        for batch in batches:
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

    def _global_host(self, x: np.ndarray) -> np.ndarray:
        """The global batch's copy of a per-process array (rows in the global array's order)."""
        if jax.process_count() == 1:
            return x
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

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

    def evaluate(self, state: loop.TrainState) -> tuple[dict, dict]:
        """kNN accuracy (and online probe / classifier test accuracy); also returns the features."""
        e = self.c.eval
        train_f, train_y, _ = self.features(state, "train")
        test_f, test_y, test_p = self.features(state, "test")
        knn_acc = knn.knn_accuracy(
            train_f, train_y, test_f, test_y, self.num_classes, k=e.knn_k, temperature=e.knn_temperature
        )
        out = {"knn_acc": knn_acc}
        if self.has_classifier:
            out["online_probe_acc" if self.c.task == "simclr" else "test_acc"] = float(np.mean(test_p == test_y))
        return out, {"train": (train_f, train_y), "test": (test_f, test_y)}

    def probe(self, feats: dict) -> dict:
        """The offline linear probe (config.probe) on the frozen features `evaluate` returned."""
        p = self.c.probe
        (train_f, train_y), (test_f, test_y) = feats["train"], feats["test"]
        res = linear_probe.linear_probe(
            train_f,
            train_y,
            test_f,
            test_y,
            self.num_classes,
            method=p.method,
            l2=p.l2,  # a number or a list / tuple of them
            val_fraction=p.val_fraction,
            max_iter=p.max_iter,
            seed=self.c.seed,
        )
        return {
            "linear_probe_acc": res["accuracy"],
            "linear_probe_train_acc": res["train_accuracy"],
            "linear_probe_l2": res["l2"],
        }
