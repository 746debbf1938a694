"""The final measurements of one trained arm on fresh samples: recovery, decoupling, linear probes, collapse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from cl_features.augment import vectors
from cl_features.config_checks import at_least, check
from cl_features.data import sparse_coding
from cl_features.measure import collapse, linear_probe, neuron_correlation, recovery
from cl_features.synthetic import task


def check_fields(c: ml_collections.ConfigDict) -> None:
    check(c, "measure.threshold", lambda v: 0 < v <= 1, "in (0, 1]")
    at_least(c, 16, "measure.num_samples")
    at_least(c, 1, "measure.probe_tasks")


def recovery_row(c: ml_collections.ConfigDict, w: jax.Array, dictionary: jax.Array) -> dict:
    """What training logs: the recovered fraction of atoms and the span share of weights w [m, d1]."""
    rec = recovery.recovery(w, dictionary, c.measure.threshold)
    return {"recovered_fraction": float(rec["recovered_fraction"]), "span_share": float(rec["span_share_mean"])}


def measure(c: ml_collections.ConfigDict, arm: str, model: nnx.Module, dictionary: jax.Array) -> dict:
    """Recovery, decoupling (measured and predicted), probes and the collapse measure (effective rank and top
    direction's variance share of the representation over the fresh samples) of the trained network."""
    w = task.encoder(model).w[...]
    rec = recovery.recovery(w, dictionary, c.measure.threshold)
    k_data, k_aug, k_u = jax.random.split(task.stream_key(c, task.MEASURE_STREAM), 3)
    n = c.measure.num_samples
    data = sparse_coding.sample(k_data, dictionary, n, c.data.sparsity, c.data.sigma)
    params = task.augment_params(c)
    keys = sparse_coding.example_keys(k_aug, jnp.arange(n, dtype=jnp.uint32))
    emp = neuron_correlation.empirical(w, vectors.augment_parts(arm, keys, data.mz, data.xi, params))
    pred = neuron_correlation.predicted(
        w, dictionary, sparsity=c.data.sparsity, sigma=c.data.sigma, augmentation=arm, params=params
    )
    # Probe: y_t = sign(<u_t, z>) on clean inputs, features at the final bias; half the samples train it.
    labels = np.asarray(jnp.sign(data.z @ jax.random.normal(k_u, (c.data.d, c.measure.probe_tasks))))
    feats = np.asarray(model(data.x, task.bias_scale_at(c, c.train.steps)))
    half, l2 = n // 2, c.measure.probe_l2

    def probe(f):
        return float(linear_probe.ridge_binary_accuracy(f[:half], labels[:half], f[half:], labels[half:], l2).mean())

    fin = lambda v: float(jnp.nanmean(v))  # noqa: E731  (dead neurons give NaN correlations)
    return {
        "recovered_fraction": float(rec["recovered_fraction"]),
        "span_share": float(rec["span_share_mean"]),
        "atoms_per_neuron": float(jnp.median(rec["atoms_per_neuron"])),
        "sparse_corr": fin(emp["sparse_corr"]),
        "dense_corr": fin(emp["dense_corr"]),
        "sparse_corr_predicted": fin(pred["sparse_corr"]),
        "dense_corr_predicted": fin(pred["dense_corr"]),
        "probe_accuracy": probe(feats),
        "raw_probe_accuracy": probe(np.asarray(data.x)),
        "active_frac": float(np.mean(feats != 0)),
        **collapse.collapse(jnp.asarray(feats)),
    }
