"""The synthetic experiment: config -> data -> augment -> model -> objective -> train step -> measure.

`run(config, workdir)` trains one network per augmentation arm on the sparse coding model and writes
metrics.jsonl, weights.npz, summary.json / summary.md and figures into `workdir`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from cl_features import objectives, prng
from cl_features.augment import vectors
from cl_features.config_checks import require as _require
from cl_features.data import sparse_coding
from cl_features.measure import linear_probe, neuron_decoupling, recovery
from cl_features.models import brelu
from cl_features.report import run_info
from cl_features.train import checkpoint, loop, optim, resumable
from cl_features.train import mesh as mesh_lib
from cl_features.train.metrics_log import log_figures

OBJECTIVES = ("info_nce", "nt_xent")
SUMMARY_KEYS = (
    "recovered_fraction",
    "final_loss",
    "span_share",
    "sparse_corr",
    "dense_corr",
    "probe_accuracy",
    "raw_probe_accuracy",
    "steps",
    "seconds",
)
# Config fields a resumed arm may change: frequencies, the number of steps and devices (checkpoint module), the
# other arms and the final measurements.
RESUME_MUTABLE_FIELDS = checkpoint.MUTABLE_FIELDS + ("arms", "measure")
# Offsets folded into the seed so every random stream is distinct and reproducible.
_DICT_STREAM, _TRAIN_STREAM, _MEASURE_STREAM, _INIT_STREAM = 1, 2, 3, 4


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


def arm_names(config: ml_collections.ConfigDict) -> list[str]:
    arms = [a.strip() for a in str(config.arms).split(",") if a.strip()]
    if not arms:
        raise ValueError(f"arms must name at least one of {vectors.AUGMENTATIONS}, got {config.arms!r}")
    for a in arms:
        vectors.check_name(a, field="arms")
    if len(set(arms)) != len(arms):
        raise ValueError(f"arms must not repeat a name, got {config.arms!r}")
    return arms


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every field before any compilation; returns the resolved config."""
    c = resolve(config)
    _require(isinstance(c.seed, int) and c.seed >= 0, "seed", "an int >= 0", c.seed)
    arm_names(c)
    d, d1 = c.data.d, c.data.d1
    _require(isinstance(d, int) and d >= 1, "data.d", "an int >= 1", d)
    _require(isinstance(d1, int) and d1 >= d, "data.d1", f"an int >= data.d ({d})", d1)
    _require(0.0 < c.data.sparsity <= 1.0, "data.sparsity", "in (0, 1]", c.data.sparsity)
    _require(c.data.sigma >= 0.0, "data.sigma", ">= 0", c.data.sigma)
    _require(
        c.data.dictionary in sparse_coding.DICTIONARY_KINDS,
        "data.dictionary",
        f"one of {sparse_coding.DICTIONARY_KINDS}",
        c.data.dictionary,
    )
    _require(isinstance(c.model.width, int) and c.model.width >= 1, "model.width", "an int >= 1", c.model.width)
    _require(c.model.init_scale > 0, "model.init_scale", "> 0", c.model.init_scale)
    _require(
        c.model.activation in brelu.ACTIVATIONS, "model.activation", f"one of {brelu.ACTIVATIONS}", c.model.activation
    )
    _require(c.model.bias in brelu.BIAS_KINDS, "model.bias", f"one of {brelu.BIAS_KINDS}", c.model.bias)
    _require(c.model.bias_c >= 0, "model.bias_c", ">= 0", c.model.bias_c)
    _require(c.model.bias_ramp_steps >= 0, "model.bias_ramp_steps", ">= 0", c.model.bias_ramp_steps)
    _require(c.objective.name in OBJECTIVES, "objective.name", f"one of {OBJECTIVES}", c.objective.name)
    _require(c.objective.temperature > 0, "objective.temperature", "> 0", c.objective.temperature)
    _require(c.objective.weight_decay >= 0, "objective.weight_decay", ">= 0", c.objective.weight_decay)
    _require(0.0 < c.augment.keep_prob <= 1.0, "augment.keep_prob", "in (0, 1]", c.augment.keep_prob)
    _require(c.augment.noise_std >= 0, "augment.noise_std", ">= 0", c.augment.noise_std)
    t = c.train
    _require(isinstance(t.batch_size, int) and t.batch_size >= 2, "train.batch_size", "an int >= 2", t.batch_size)
    _require(t.learning_rate > 0, "train.learning_rate", "> 0", t.learning_rate)
    _require(t.optimizer in optim.OPTIMIZERS, "train.optimizer", f"one of {optim.OPTIMIZERS}", t.optimizer)
    _require(t.schedule in optim.SCHEDULES, "train.schedule", f"one of {optim.SCHEDULES}", t.schedule)
    _require(t.warmup_steps >= 0, "train.warmup_steps", ">= 0", t.warmup_steps)
    _require(0 < t.decay_fraction <= 1, "train.decay_fraction", "in (0, 1]", t.decay_fraction)
    resumable.check_fields(c)
    m = c.measure
    _require(0 < m.threshold <= 1, "measure.threshold", "in (0, 1]", m.threshold)
    _require(
        isinstance(m.num_samples, int) and m.num_samples >= 16, "measure.num_samples", "an int >= 16", m.num_samples
    )
    _require(isinstance(m.probe_tasks, int) and m.probe_tasks >= 1, "measure.probe_tasks", "an int >= 1", m.probe_tasks)
    return c


def augment_params(c: ml_collections.ConfigDict) -> vectors.AugmentParams:
    return vectors.AugmentParams(keep_prob=c.augment.keep_prob, noise_std=c.augment.noise_std, sigma=c.data.sigma)


def make_dictionary(c: ml_collections.ConfigDict) -> jax.Array:
    key = jax.random.fold_in(jax.random.key(c.seed), _DICT_STREAM)
    return sparse_coding.make_dictionary(key, c.data.d1, c.data.d, c.data.dictionary)


def make_model(c: ml_collections.ConfigDict) -> brelu.SymmetricReLUNet:
    key = jax.random.fold_in(jax.random.key(c.seed), _INIT_STREAM)
    return brelu.SymmetricReLUNet(
        c.data.d1,
        c.model.width,
        rngs=nnx.Rngs(params=key),
        init_scale=c.model.init_scale,
        activation=c.model.activation,
        bias=c.model.bias,
        bias_scale_init=c.model.bias_c * c.data.sigma,
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
        if c.objective.name == "info_nce":
            contrastive, logits = objectives.info_nce(h1, h2, tau)
            acc = objectives.instance_accuracy(logits)
        else:
            contrastive = objectives.nt_xent(h1, h2, tau)
            acc = jnp.nan
        loss = contrastive + objectives.l2_penalty(nnx.state(model, nnx.Param), wd)
        return loss, {"contrastive_loss": contrastive, "instance_acc": acc, "active_frac": jnp.mean(h1 != 0)}

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


def measure(c: ml_collections.ConfigDict, arm: str, model: brelu.SymmetricReLUNet, dictionary: jax.Array) -> dict:
    """Final measurements on fresh samples: recovery, decoupling (measured and predicted), probes."""
    w = model.w[...]
    rec = recovery.recovery(w, dictionary, c.measure.threshold)
    key = jax.random.fold_in(jax.random.key(c.seed), _MEASURE_STREAM)
    k_data, k_aug, k_u = jax.random.split(key, 3)
    n = c.measure.num_samples
    data = sparse_coding.sample(k_data, dictionary, n, c.data.sparsity, c.data.sigma)
    params = augment_params(c)
    views = vectors.augment_parts(
        arm, sparse_coding.example_keys(k_aug, jnp.arange(n, dtype=jnp.uint32)), data.mz, data.xi, params
    )
    emp = neuron_decoupling.empirical(w, views)
    pred = neuron_decoupling.predicted(
        w, dictionary, sparsity=c.data.sparsity, sigma=c.data.sigma, augmentation=arm, params=params
    )
    # Probe: y_t = sign(<u_t, z>) on clean inputs, features at the final bias.
    u = jax.random.normal(k_u, (c.data.d, c.measure.probe_tasks))
    labels = np.asarray(jnp.sign(data.z @ u))
    feats = np.asarray(model(data.x, bias_scale_at(c, c.train.steps)))
    half = n // 2
    acc = linear_probe.ridge_binary_accuracy(
        feats[:half], labels[:half], feats[half:], labels[half:], c.measure.probe_l2
    )
    x = np.asarray(data.x)
    raw = linear_probe.ridge_binary_accuracy(x[:half], labels[:half], x[half:], labels[half:], c.measure.probe_l2)
    fin = lambda v: float(jnp.nanmean(v))  # noqa: E731  (dead neurons give NaN correlations)
    return {
        "recovered_fraction": float(rec["recovered_fraction"]),
        "span_share": float(rec["span_share_mean"]),
        "atoms_per_neuron": float(jnp.median(rec["atoms_per_neuron"])),
        "sparse_corr": fin(emp["sparse_corr"]),
        "dense_corr": fin(emp["dense_corr"]),
        "sparse_corr_predicted": fin(pred["sparse_corr"]),
        "dense_corr_predicted": fin(pred["dense_corr"]),
        "probe_accuracy": float(acc.mean()),
        "raw_probe_accuracy": float(raw.mean()),
        "active_frac": float(np.mean(feats != 0)),
    }


def make_train_state(
    c: ml_collections.ConfigDict, mesh
) -> tuple[nnx.GraphDef, optax.GradientTransformation, loop.TrainState]:
    """(graphdef, optimizer, initial TrainState placed on the mesh) of one arm."""
    lr = optim.schedule(
        learning_rate=c.train.learning_rate,
        kind=c.train.schedule,
        steps=c.train.steps,
        warmup_steps=c.train.warmup_steps,
        decay_fraction=c.train.decay_fraction,
    )
    tx = optim.make_optimizer(name=c.train.optimizer, learning_rate=lr, momentum=c.train.momentum)
    train_seed = int(jax.random.randint(jax.random.fold_in(jax.random.key(c.seed), _TRAIN_STREAM), (), 0, 2**31 - 1))
    graphdef, state = loop.init_state(make_model(c), tx, train_seed)
    return graphdef, tx, loop.place_state(state, mesh)


def arm_run_config(c: ml_collections.ConfigDict, arm: str) -> dict:
    """What an arm's checkpoints record and resuming checks: the resolved config and the arm."""
    return dict(c.to_dict(), arm=arm)


def _finished_results(path: str, c: ml_collections.ConfigDict, arm: str) -> dict | None:
    """The results an earlier run wrote for this arm at train.steps with this config, or None."""
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    results = saved.get("results") or {}
    same = not checkpoint.config_diff(
        saved.get("config", {}), arm_run_config(c, arm), checkpoint.MUTABLE_FIELDS + ("arms",)
    )
    return results if same and results.get("steps") == c.train.steps else None


def train_arm(
    c: ml_collections.ConfigDict, arm: str, dictionary: jax.Array, *, mesh, workdir: str | None, verbose: bool = True
) -> tuple[dict, np.ndarray, list[dict]]:
    """Trains one arm; returns (results, final weights [m, d1], history logged by this call).

    With a workdir, the arm checkpoints into <workdir>/<arm>/checkpoints and resumes from the newest one there
    (the metrics log is cut back to that step); an arm whose final checkpoint and results.json are present is
    neither retrained nor re-measured. Raises checkpoint.Preempted after saving on SIGTERM.
    """
    t0 = time.perf_counter()
    main = jax.process_index() == 0
    graphdef, tx, state = make_train_state(c, mesh)
    step_fn = make_step_fn(c, arm, dictionary, graphdef, tx, mesh)

    def on_log(step, st):
        w = jnp.asarray(jax.device_get(st.params["w"][...]))  # process-local copy of the replicated weights
        rec = recovery.recovery(w, dictionary, c.measure.threshold)
        return {"recovered_fraction": float(rec["recovered_fraction"]), "span_share": float(rec["span_share_mean"])}

    arm_dir = os.path.join(workdir, arm) if workdir else None
    out = resumable.train(
        arm_dir,
        arm_run_config(c, arm),
        step_fn,
        state,
        mesh=mesh,
        total_steps=c.train.steps,
        mutable_fields=RESUME_MUTABLE_FIELDS,
        on_log=on_log,
        name=arm,
        verbose=verbose,
    )
    state, history, start = out.state, out.history, out.start
    model = loop.merge(graphdef, jax.tree_util.tree_map(lambda x: jnp.asarray(jax.device_get(x)), state))
    weights = np.asarray(model.w[...])
    results_path = os.path.join(arm_dir, "results.json") if arm_dir else None
    if results_path and start == c.train.steps:
        done = _finished_results(results_path, c, arm)
        if done is not None:
            if verbose and main:
                print(f"[{arm}] finished earlier (step {start}): results from {results_path}", flush=True)
            return done, weights, history
    results = measure(c, arm, model, dictionary)
    results["final_loss"] = out.last_row["contrastive_loss"] if out.last_row else float("nan")
    results["steps"] = c.train.steps
    results["seconds"] = round(time.perf_counter() - t0, 2)
    if results_path and main:
        tmp = results_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"config": arm_run_config(c, arm), "results": results}, f, indent=2, sort_keys=True)
        os.replace(tmp, results_path)
    return results, weights, history


def run(config: ml_collections.ConfigDict, workdir: str | None, *, verbose: bool = True) -> dict:
    """All arms of the experiment; writes the workdir (process 0) and returns the summary dict.

    Started again in the same workdir it resumes (see train_arm); raises checkpoint.Preempted on SIGTERM after
    saving, checkpoint.ConfigMismatch if the workdir's checkpoints were made with a config that changes the run.
    """
    c = validate(config)
    mesh = mesh_lib.make_mesh(c.train.num_devices)
    mesh_lib.check_batch_size(c.train.batch_size, mesh)
    dictionary = make_dictionary(c)
    if workdir:
        run_info.write_run_info(workdir, c, kind="synthetic")  # process 0 only
    summary = {"arms": {}, "config": c.to_dict()}
    weights, histories = {}, {}
    for arm in arm_names(c):
        results, w, history = train_arm(c, arm, dictionary, mesh=mesh, workdir=workdir, verbose=verbose)
        summary["arms"][arm] = results
        weights[arm], histories[arm] = w, history
        if verbose and jax.process_index() == 0:
            print(f"[{arm}] " + "  ".join(f"{k}={results[k]:.4g}" for k in SUMMARY_KEYS), flush=True)
    if workdir and jax.process_index() == 0:
        write_outputs(workdir, summary, weights, np.asarray(dictionary))
    return summary


def write_outputs(workdir: str, summary: dict, weights: dict[str, np.ndarray], dictionary: np.ndarray) -> None:
    from cl_features.report import synthetic as report  # matplotlib only when writing

    os.makedirs(workdir, exist_ok=True)
    np.savez(os.path.join(workdir, "weights.npz"), dictionary=dictionary, **{f"w_{k}": v for k, v in weights.items()})
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    figures = report.write_report(workdir)
    log_figures(
        workdir,
        summary["config"]["train"]["steps"],
        {os.path.splitext(k)[0]: p for k, p in figures.items() if k.endswith(".png")},
    )
