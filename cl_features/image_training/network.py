"""The image model and its training loss (config.task, model, objective, augment); docs/images.md.

SimCLR: example i of the global batch draws its views from fold_in(step_key, i) (`global_example_ids`); one
encoder call on both views; objective.name picks nt_xent, simsiam or byol on the projections z, plus an online
probe on stop_gradient(h). Supervised: one augmented view, cross-entropy. BYOL's EMA target lives in the model
(`EMATarget` variables, checkpointed) and moves inside the step after the optimiser update (`make_after_update`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from cl_features import objectives
from cl_features.augment import image_ops, image_sets
from cl_features.config_checks import at_least, check, one_of, positive
from cl_features.models import heads, resnet
from cl_features.train import mesh as mesh_lib

TASKS = ("simclr", "supervised")
OBJECTIVES = ("nt_xent", "simsiam", "byol")  # objective.name, task=simclr
PREDICTOR_OBJECTIVES = ("simsiam", "byol")
EMA_SCHEDULES = ("constant", "cosine")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PRNG_IMPLS = ("rbg", "threefry2x32")  # for the initial weights; rbg compiles much faster on CPU
INIT_STREAM = 1  # folded into the seed for the initial weights (2: train steps, 4: the kNN bank subset)


def check_fields(c: ml_collections.ConfigDict) -> None:
    one_of(c, "task", TASKS)
    one_of(c, "model.encoder", resnet.ENCODER_NAMES)
    one_of(c, "model.dtype", tuple(DTYPES))
    one_of(c, "model.init_prng_impl", PRNG_IMPLS)
    at_least(c, 1, "model.input_size", "model.head_out_dim", "model.head_layers")
    check(c, "model.head_hidden_dim", lambda v: v is None or v >= 1, "None (the encoder's feature dim) or an int >= 1")
    positive(c, "objective.temperature")
    one_of(c, "objective.name", OBJECTIVES)
    if c.task != "simclr":
        check(c, "objective.name", lambda v: v == "nt_xent", f"nt_xent with task={c.task} (simsiam, byol: task=simclr)")
    at_least(c, 1, "objective.predictor_layers")
    check(
        c, "objective.predictor_hidden_dim", lambda v: v is None or v >= 1, "None (model.head_out_dim) or an int >= 1"
    )
    check(c, "objective.ema_momentum", lambda v: 0 <= v < 1, "in [0, 1)")
    one_of(c, "objective.ema_schedule", EMA_SCHEDULES)
    image_sets.resolve(c.augment)  # raises "config.augment.<op>.<field> must be ..."


class ImageModel(nnx.Module):
    """encoder: images -> h [batch, feat_dim]; head: h -> z (SimCLR only); classifier: h -> logits.

    For SimCLR the classifier is the online probe (fed stop_gradient(h)); for supervised training it is the task
    head. Either head may be None. predictor: z -> p (simsiam, byol); target_encoder, target_head: BYOL's EMA
    copies of encoder and head (`heads.ema_copy`: not Params, the optimiser never sees them). Only the encoder
    is evaluated (kNN, probes, the decoupling measurements).
    """

    def __init__(
        self,
        encoder: nnx.Module,
        head: nnx.Module | None,
        classifier: nnx.Module | None,
        predictor: nnx.Module | None = None,
        ema_target: bool = False,
    ):
        self.encoder, self.head, self.classifier, self.predictor = encoder, head, classifier, predictor
        self.target_encoder = heads.ema_copy(encoder) if ema_target else None
        self.target_head = heads.ema_copy(head) if ema_target else None

    def update_target(self, momentum) -> None:
        """target <- momentum * target + (1 - momentum) * online (encoder and head), parameter by parameter."""
        heads.ema_update(self.target_encoder, self.encoder, momentum)
        heads.ema_update(self.target_head, self.head, momentum)


def make_model(c: ml_collections.ConfigDict, num_classes: int) -> ImageModel:
    """The model at its seeded initialisation, built in one compiled call (eager init compiles every op)."""

    def build():
        key = jax.random.fold_in(jax.random.key(c.seed, impl=c.model.init_prng_impl), INIT_STREAM)
        rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
        dtype, m = DTYPES[c.model.dtype], c.model
        encoder = resnet.build_encoder(m.encoder, rngs=rngs, dtype=dtype)
        feat = encoder.feat_dim
        head, classifier, predictor, o = None, None, None, c.objective
        if c.task == "simclr":
            head = heads.ProjectionHead(
                feat, m.head_hidden_dim or feat, m.head_out_dim, m.head_layers, use_bn=m.head_bn, rngs=rngs, dtype=dtype
            )
            if c.objective.online_probe:
                classifier = heads.LinearClassifier(feat, num_classes, rngs=rngs)
            if o.name in PREDICTOR_OBJECTIVES:
                hidden = o.predictor_hidden_dim or m.head_out_dim
                predictor = heads.ProjectionHead(
                    m.head_out_dim, hidden, m.head_out_dim, o.predictor_layers, rngs=rngs, dtype=dtype
                )
        else:
            classifier = heads.LinearClassifier(feat, num_classes, rngs=rngs, zero_init=False)
        return ImageModel(encoder, head, classifier, predictor, ema_target=c.task == "simclr" and o.name == "byol")

    return nnx.jit(build)()


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


def representation_std(z: jax.Array) -> jax.Array:
    """Collapse measure: sqrt(dim) x the mean over dims of the std over the batch of the unit rows of z [batch, dim].

    0 when every row points the same way (complete collapse); about 1 for unit vectors spread over the sphere
    (SimSiam, Chen & He 2021, Fig. 2, without the sqrt(dim) factor).
    """
    u = objectives._unit(z.astype(jnp.float32))
    return jnp.sqrt(z.shape[1]) * jnp.mean(jnp.std(u, axis=0))


def ema_momentum(c: ml_collections.ConfigDict, step, total_steps: int) -> jax.Array:
    """BYOL's momentum after step `step` (0-based): m (constant) or 1 - (1 - m)(cos(pi step / total) + 1) / 2."""
    m = c.objective.ema_momentum
    if c.objective.ema_schedule == "constant":
        return jnp.asarray(m, jnp.float32)
    frac = jnp.asarray(step, jnp.float32) / total_steps
    return 1 - (1 - m) * (jnp.cos(jnp.pi * frac) + 1) / 2


def make_after_update(c: ml_collections.ConfigDict, total_steps: int):
    """after_update(model, step) for `loop.make_step_fn`: BYOL's EMA move of the target (None otherwise)."""
    if not (c.task == "simclr" and c.objective.name == "byol"):
        return None

    def after_update(model, step):
        model.update_target(ema_momentum(c, step, total_steps))

    return after_update


def ssl_loss(c: ml_collections.ConfigDict, model: ImageModel, x: jax.Array) -> tuple[jax.Array, jax.Array, dict]:
    """x: both views' normalised images concatenated [2n, S, S, 3] -> (loss, features h [2n, feat], metrics)."""
    n = x.shape[0] // 2
    h = model.encoder(x)
    z = model.head(h)
    name = c.objective.name
    if name == "nt_xent":
        loss = objectives.nt_xent(z[:n], z[n:], c.objective.temperature)
    else:
        p = model.predictor(z).astype(jnp.float32)
        if name == "simsiam":
            zf = z.astype(jnp.float32)
            loss = objectives.simsiam(p[:n], p[n:], zf[:n], zf[n:])
        else:
            t = model.target_head(model.target_encoder(x)).astype(jnp.float32)
            loss = objectives.byol(p[:n], p[n:], t[:n], t[n:])
    metrics = {
        "contrastive_loss": loss,  # the objective's loss (NT-Xent, SimSiam or BYOL), without the online probe
        "contrast_acc": contrast_accuracy(z[:n], z[n:]),
        "repr_std": representation_std(z),
    }
    return loss, h, metrics


def make_loss_fn(c: ml_collections.ConfigDict, mesh):
    """loss_fn(model, batch {'image': uint8 [B, H, W, 3], 'label': [B]}, key, step) for `loop.make_step_fn`."""
    aug_cfg = image_sets.resolve(c.augment).to_dict()
    size = c.model.input_size
    mean, std = c.data.mean, c.data.std
    ids_np = global_example_ids(c.train.batch_size, jax.process_count())
    ids_sharding = mesh_lib.batch_sharding(mesh)

    def example_ids():
        return jax.lax.with_sharding_constraint(jnp.asarray(ids_np), ids_sharding)

    def simclr(model, batch, key, step):
        del step
        images, labels = batch["image"], batch["label"]
        v1, v2 = image_ops.two_views(key, images, aug_cfg, size, example_ids=example_ids())
        loss, h, metrics = ssl_loss(c, model, normalize(jnp.concatenate([v1, v2]), mean, std))
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
        x = image_ops.augment_images(keys, images, aug_cfg, size)
        logits = model.classifier(model.encoder(normalize(x, mean, std)).astype(jnp.float32))
        return objectives.cross_entropy(logits, labels), {"train_acc": jnp.mean(jnp.argmax(logits, 1) == labels)}

    return simclr if c.task == "simclr" else supervised
