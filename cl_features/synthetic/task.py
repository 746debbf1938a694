"""One arm's training task: dictionary, network, the batch of each step, the loss, the compiled step.

config -> dictionary M (data.*) and network (model.*) -> per step: x = Mz + xi for the global batch, keyed per
example, and the augmentation's draws (drawn one step ahead, `make_sample_fn`) -> two views -> the objective
(+ l2) -> `loop.make_step_fn`. `check_fields` states the rules of the fields read here; `resolve` fills the
derived ones.

Objectives (objective.name): contrastive info_nce, nt_xent, spectral_contrastive; without negatives vicreg
(decorrelation), simsiam and byol. simsiam and byol train a `Learner`: the network `net`, a predictor head on the
online branch and, for byol, an EMA target copy of `net` (non-Param variables, so they ride in the TrainState's
`rest` and every checkpoint keeps them).
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
from cl_features.models import brelu, heads
from cl_features.train import loop, optim
from cl_features.train import mesh as mesh_lib

OBJECTIVES = ("info_nce", "nt_xent", "spectral_contrastive", "vicreg", "simsiam", "byol")
PREDICTOR_OBJECTIVES = ("simsiam", "byol")
# Offsets folded into the seed so every random stream is distinct and reproducible.
DICT_STREAM, TRAIN_STREAM, MEASURE_STREAM, INIT_STREAM, PREDICTOR_STREAM = 1, 2, 3, 4, 5


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
    at_least(c, 0, "objective.vicreg_invariance", "objective.vicreg_variance", "objective.vicreg_covariance")
    at_least(c, 1, "objective.predictor_layers")
    check(c, "objective.ema_momentum", lambda v: 0 <= v < 1, "in [0, 1)")
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


class Learner(nnx.Module):
    """The network `net` with a predictor head on the online branch and (ema) an EMA target copy of `net`.

    Called like `net`: the representation is the network's output; the predictor and target only enter the loss.
    """

    def __init__(self, net: brelu.SymmetricReLUNet, predictor: nnx.Module, ema: bool):
        self.net, self.predictor = net, predictor
        self.target = heads.ema_copy(net) if ema else None

    def __call__(self, x: jax.Array, bias_scale: jax.Array | float = 0.0) -> jax.Array:
        return self.net(x, bias_scale)

    def update_target(self, momentum) -> brelu.SymmetricReLUNet:
        """target <- momentum * target + (1 - momentum) * online, with the online parameters of this step.

        Called once per step before the target's forward pass: the target step s uses is m xi_{s-1} + (1 - m)
        theta_s (xi_{-1} = theta_0), Grill et al.'s update after each optimiser step, one call later.
        """
        return heads.ema_update(self.target, self.net, momentum)


def encoder(model: nnx.Module) -> brelu.SymmetricReLUNet:
    """The paper's network inside a model of `make_model`."""
    return getattr(model, "net", model)


def make_model(c: ml_collections.ConfigDict) -> nnx.Module:
    """The network (a `Learner` around it for simsiam and byol)."""
    m = c.model
    net = brelu.SymmetricReLUNet(
        c.data.d1,
        m.width,
        rngs=nnx.Rngs(params=stream_key(c, INIT_STREAM)),
        init_scale=m.init_scale,
        activation=m.activation,
        bias=m.bias,
        bias_scale_init=m.bias_c * c.data.sigma,
    )
    if c.objective.name not in PREDICTOR_OBJECTIVES:
        return net
    rngs = nnx.Rngs(params=stream_key(c, PREDICTOR_STREAM))
    predictor = heads.ProjectionHead(m.width, m.width, m.width, c.objective.predictor_layers, rngs=rngs)
    return Learner(net, predictor, ema=c.objective.name == "byol")


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
    """loss_fn(model, batch, key, step): two views of the batch, the objective (+ l2 over the trained parameters).

    batch: a SyntheticBatch from `make_sample_fn`, or None to draw it here from the key (the same draws).
    """
    params = augment_params(c)
    sample_fn = make_sample_fn(c, arm, dictionary, mesh)
    o = c.objective
    tau, wd = o.temperature, o.weight_decay

    def loss_fn(model, batch, key, step):
        if batch is None:
            batch = sample_fn(key, step)
        views = vectors.apply(arm, batch.draws, batch.mz, batch.xi, params)
        bs = bias_scale_at(c, step)
        h1, h2 = model(views.view1, bs), model(views.view2, bs)
        metrics = {"active_frac": jnp.mean(h1 != 0)}  # instance_acc only where the logits are the scores
        if o.name in ("info_nce", "spectral_contrastive"):
            loss, logits = (
                objectives.info_nce(h1, h2, tau) if o.name == "info_nce" else objectives.spectral_contrastive(h1, h2)
            )
            metrics["instance_acc"] = objectives.instance_accuracy(logits)
        elif o.name == "nt_xent":
            loss = objectives.nt_xent(h1, h2, tau)
        elif o.name == "vicreg":
            loss = objectives.vicreg(h1, h2, o.vicreg_invariance, o.vicreg_variance, o.vicreg_covariance)
        elif o.name == "simsiam":
            loss = objectives.simsiam(model.predictor(h1), model.predictor(h2), h1, h2)
        else:
            target = model.update_target(o.ema_momentum)
            t1, t2 = target(views.view1, bs), target(views.view2, bs)
            loss = objectives.byol(model.predictor(h1), model.predictor(h2), t1, t2)
        total = loss + objectives.l2_penalty(nnx.state(model, nnx.Param), wd)
        return total, {"contrastive_loss": loss, **metrics}

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
        learning_rate=make_schedule(c),
        examples_per_step=c.train.batch_size,
    )


def make_schedule(c: ml_collections.ConfigDict):
    """The learning rate of train.*: a number or an optax schedule of the step."""
    t = c.train
    return optim.schedule(
        learning_rate=t.learning_rate,
        kind=t.schedule,
        steps=t.steps,
        warmup_steps=t.warmup_steps,
        decay_fraction=t.decay_fraction,
    )


def make_optimizer(c: ml_collections.ConfigDict):
    """The optax transformation of train.* (learning rate schedule included)."""
    return optim.make_optimizer(name=c.train.optimizer, learning_rate=make_schedule(c), momentum=c.train.momentum)


def make_train_state(c: ml_collections.ConfigDict, mesh=None):
    """(graphdef, optimizer, initial TrainState placed on the mesh) of one arm.

    mesh=None leaves the state unplaced; then it may be called under jit/vmap with numeric config fields as arrays
    (cl_features.sweep draws many runs' states at once).
    """
    tx = make_optimizer(c)
    train_seed = jax.random.randint(stream_key(c, TRAIN_STREAM), (), 0, 2**31 - 1)
    graphdef, state = loop.init_state(make_model(c), tx, train_seed)
    return graphdef, tx, state if mesh is None else loop.place_state(state, mesh)
