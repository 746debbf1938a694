"""One arm's training task: dictionary, network, the batch of each step, the loss, the compiled step.

config -> dictionary M (data.*) and network (model.*) -> per step: x = Mz + xi for the global batch, keyed per
example, and the augmentation's draws (drawn one step ahead, `make_sample_fn`) -> two views -> InfoNCE or NT-Xent
(+ l2) -> `loop.make_step_fn`. `check_fields` states the rules of the fields read here; `resolve` fills the
derived ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from cl_features import objectives, prng
from cl_features.augment import vectors
from cl_features.config_checks import at_least, check, fraction, one_of, positive
from cl_features.data import sparse_coding
from cl_features.models import brelu
from cl_features.train import loop, optim
from cl_features.train import mesh as mesh_lib

OBJECTIVES = ("info_nce", "nt_xent")
# Offsets folded into the seed so every random stream is distinct and reproducible.
DICT_STREAM, TRAIN_STREAM, MEASURE_STREAM, INIT_STREAM = 1, 2, 3, 4


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with the derived (None) fields filled in from the others."""
    c = ml_collections.ConfigDict(config.to_dict())
    if c.data.sparsity is None:
        c.data.sparsity = min(1.0, 3.0 / c.data.d)
    if c.model.width is None:
        c.model.width = 4 * c.data.d
    if c.model.init_scale is None:
        c.model.init_scale = 1.0 / float(np.sqrt(c.data.d1))
    return c


def check_fields(c: ml_collections.ConfigDict) -> None:
    """The rules of seed, data.*, model.*, objective.*, augment.* and the optimiser's train.* fields."""
    at_least(c, 0, "seed", "data.sigma", "model.bias_c", "model.bias_ramp_steps", "objective.weight_decay")
    at_least(c, 0, "augment.noise_std", "train.warmup_steps")
    at_least(c, 1, "data.d", "model.width")
    check(c, "data.d1", lambda v: v >= c.data.d, f">= data.d ({c.data.d})")
    fraction(c, "data.sparsity", "augment.keep_prob", "train.decay_fraction")
    positive(c, "model.init_scale", "objective.temperature", "train.learning_rate")
    at_least(c, 2, "train.batch_size")
    one_of(c, "data.dictionary", sparse_coding.DICTIONARY_KINDS)
    one_of(c, "model.activation", brelu.ACTIVATIONS)
    one_of(c, "model.bias", brelu.BIAS_KINDS)
    one_of(c, "objective.name", OBJECTIVES)
    one_of(c, "train.optimizer", optim.OPTIMIZERS)
    one_of(c, "train.schedule", optim.SCHEDULES)


def augment_params(c: ml_collections.ConfigDict) -> vectors.AugmentParams:
    return vectors.AugmentParams(keep_prob=c.augment.keep_prob, noise_std=c.augment.noise_std, sigma=c.data.sigma)


def stream_key(c: ml_collections.ConfigDict, stream: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(c.seed), stream)


def make_dictionary(c: ml_collections.ConfigDict) -> jax.Array:
    """M: [d1, d]."""
    return sparse_coding.make_dictionary(stream_key(c, DICT_STREAM), c.data.d1, c.data.d, c.data.dictionary)


def make_model(c: ml_collections.ConfigDict) -> brelu.SymmetricReLUNet:
    m = c.model
    return brelu.SymmetricReLUNet(
        c.data.d1,
        m.width,
        rngs=nnx.Rngs(params=stream_key(c, INIT_STREAM)),
        init_scale=m.init_scale,
        activation=m.activation,
        bias=m.bias,
        bias_scale_init=m.bias_c * c.data.sigma,
    )


def bias_scale_at(c: ml_collections.ConfigDict, step) -> jax.Array:
    return brelu.bias_scale(step, c=c.model.bias_c, sigma=c.data.sigma, ramp_steps=c.model.bias_ramp_steps)


class SyntheticBatch(NamedTuple):
    """One step's draws: the parts of x = Mz + xi and the augmentation's random numbers."""

    mz: jax.Array  # [batch, d1]
    xi: jax.Array  # [batch, d1]
    draws: Any  # vectors.draw(arm, ...): a pytree of [batch, ...] arrays


def make_sample_fn(c: ml_collections.ConfigDict, arm: str, dictionary: jax.Array, mesh):
    """sample_fn(key, step) -> SyntheticBatch of the global batch, keyed per example (same on any mesh)."""
    params = augment_params(c)
    ids_sharding = mesh_lib.batch_sharding(mesh)
    batch_size, p, sigma = c.train.batch_size, c.data.sparsity, c.data.sigma

    def sample_fn(key, step):
        del step
        k_data, k_aug = prng.split(key)
        ids = jax.lax.with_sharding_constraint(jnp.arange(batch_size, dtype=jnp.uint32), ids_sharding)
        data = sparse_coding.sample(k_data, dictionary, batch_size, p, sigma, ids)
        draws = vectors.draw(arm, sparse_coding.example_keys(k_aug, ids), c.data.d1, params)
        return SyntheticBatch(mz=data.mz, xi=data.xi, draws=draws)

    return sample_fn


def make_loss_fn(c: ml_collections.ConfigDict, arm: str, dictionary: jax.Array, mesh):
    """loss_fn(model, batch, key, step): two views of the batch, contrastive loss (+ l2).

    batch: a SyntheticBatch from `make_sample_fn`, or None to draw it here from the key (the same draws).
    """
    params = augment_params(c)
    sample_fn = make_sample_fn(c, arm, dictionary, mesh)
    tau, wd = c.objective.temperature, c.objective.weight_decay

    def loss_fn(model, batch, key, step):
        if batch is None:
            batch = sample_fn(key, step)
        views = vectors.apply(arm, batch.draws, batch.mz, batch.xi, params)
        bs = bias_scale_at(c, step)
        h1, h2 = model(views.view1, bs), model(views.view2, bs)
        metrics = {"active_frac": jnp.mean(h1 != 0)}  # instance_acc only where the logits are the scores
        if c.objective.name == "info_nce":
            contrastive, logits = objectives.info_nce(h1, h2, tau)
            metrics["instance_acc"] = objectives.instance_accuracy(logits)
        else:
            contrastive = objectives.nt_xent(h1, h2, tau)
        loss = contrastive + objectives.l2_penalty(nnx.state(model, nnx.Param), wd)
        return loss, {"contrastive_loss": contrastive, **metrics}

    return loss_fn


def make_step_fn(c: ml_collections.ConfigDict, arm: str, dictionary: jax.Array, graphdef, tx, mesh) -> loop.StepFn:
    """The compiled multi-step train function of one arm (each step's batch drawn during the step before)."""
    return loop.make_step_fn(
        graphdef,
        tx,
        make_loss_fn(c, arm, dictionary, mesh),
        mesh=mesh,
        steps_per_call=c.train.steps_per_call,
        sample_fn=make_sample_fn(c, arm, dictionary, mesh),
    )


def make_optimizer(c: ml_collections.ConfigDict):
    """The optax transformation of train.* (learning rate schedule included)."""
    t = c.train
    lr = optim.schedule(
        learning_rate=t.learning_rate,
        kind=t.schedule,
        steps=t.steps,
        warmup_steps=t.warmup_steps,
        decay_fraction=t.decay_fraction,
    )
    return optim.make_optimizer(name=t.optimizer, learning_rate=lr, momentum=t.momentum)


def make_train_state(c: ml_collections.ConfigDict, mesh=None):
    """(graphdef, optimizer, initial TrainState placed on the mesh) of one arm.

    mesh=None leaves the state unplaced; then it may be called under jit/vmap with numeric config fields as arrays
    (cl_features.sweep draws many runs' states at once).
    """
    tx = make_optimizer(c)
    train_seed = jax.random.randint(stream_key(c, TRAIN_STREAM), (), 0, 2**31 - 1)
    graphdef, state = loop.init_state(make_model(c), tx, train_seed)
    return graphdef, tx, state if mesh is None else loop.place_state(state, mesh)
