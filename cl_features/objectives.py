"""Contrastive and supervised objectives (docs/theory.md section 3).

- `info_nce`: the paper's form, Sim(x, x') = <f(x), StopGrad(f(x'))>, negatives = the other second views in
  the (global) batch.
- `nt_xent`: SimCLR's form, cosine similarity, 2N-1 candidates per anchor, both directions.
- `spectral_contrastive`: HaoChen et al. 2021, contrastive without a softmax (squared inner products of negatives).
- `simsiam`, `byol`: no negatives; a predictor's output against the stop-gradient representation of the other view
  (SimSiam) or the EMA target network's (BYOL), both directions.
- `vicreg`: no negatives; invariance + a variance hinge + a covariance penalty over the batch.
- `cross_entropy`: supervised baseline.
- `l2_penalty`: (lambda / 2) ||W||_F^2.
Under jax.jit with a batch sharded over a mesh, every batch statistic (the [N, N] similarity matrices, VICReg's
variance and covariance) is over the global batch, so the negatives come from every device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def info_nce(h1: jax.Array, h2: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """Paper-form InfoNCE. h1, h2: [batch, m]. Returns (loss, logits [batch, batch]).

    L = mean_n -log( exp(<h1_n, sg(h2_n)>/tau) / sum_k exp(<h1_n, sg(h2_k)>/tau) ).
    """
    logits = h1 @ jax.lax.stop_gradient(h2).T / temperature
    loss = jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.diagonal(logits))
    return loss, logits


def _unit(z: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows of z: [batch, dim] divided by max(norm, eps); an all-zero row stays zero with a finite gradient."""
    return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(z), axis=1, keepdims=True), eps * eps))


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
    """SimCLR NT-Xent over both views. z1, z2: [batch, dim] (un-normalised)."""
    z = _unit(jnp.concatenate([z1, z2], axis=0).astype(jnp.float32))
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, sim)
    partner = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
    return jnp.mean(jax.nn.logsumexp(sim, axis=1) - sim[jnp.arange(2 * n), partner])


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy. logits: [batch, classes], labels: [batch] int."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels))


def l2_penalty(params, weight_decay: float) -> jax.Array:
    """(weight_decay / 2) * sum of squares of all leaves."""
    leaves = jax.tree_util.tree_leaves(params)
    return 0.5 * weight_decay * sum(jnp.sum(jnp.square(p)) for p in leaves)


def instance_accuracy(logits: jax.Array) -> jax.Array:
    """Fraction of anchors whose positive logit beats every negative strictly. logits: [batch, batch].

    (A max-reduce: argmax's (value, index) reduce cost ~10% of the synthetic step on CPU. Ties count as
    misses, so a collapsed representation with all logits equal scores 0.)
    """
    n = logits.shape[0]
    negatives = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, logits)
    return jnp.mean(jnp.diagonal(logits) > jnp.max(negatives, axis=1))


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """Row-wise cosine similarity of a, b: [batch, dim] -> [batch]."""
    return jnp.sum(_unit(a) * _unit(b), axis=1)


def simsiam(p1: jax.Array, p2: jax.Array, z1: jax.Array, z2: jax.Array) -> jax.Array:
    """SimSiam (Chen & He 2021): D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2, D(p, z) = -mean cos(p, z).

    p_k: the predictor's output on view k, z_k: the representation of view k; all [batch, dim].
    """
    sg = jax.lax.stop_gradient
    return -0.5 * (jnp.mean(_cosine(p1, sg(z2))) + jnp.mean(_cosine(p2, sg(z1))))


def byol(p1: jax.Array, p2: jax.Array, t1: jax.Array, t2: jax.Array) -> jax.Array:
    """BYOL (Grill et al. 2020): mean (2 - 2 cos(p1, sg(t2))) + mean (2 - 2 cos(p2, sg(t1))).

    p_k: the online predictor's output on view k, t_k: the target network's output on view k; all [batch, dim].
    Symmetrised as in the paper (the sum of both directions).
    """
    sg = jax.lax.stop_gradient
    return jnp.mean(2 - 2 * _cosine(p1, sg(t2))) + jnp.mean(2 - 2 * _cosine(p2, sg(t1)))


def spectral_contrastive(z1: jax.Array, z2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Spectral contrastive loss (HaoChen et al. 2021). z1, z2: [batch, dim]. Returns (loss, logits [batch, batch]).

    L = -2 mean_n <z1_n, z2_n> + mean_{n != k} <z1_n, z2_k>^2: the pairs (n, k != n) are the negatives.
    """
    logits = z1 @ z2.T
    n = z1.shape[0]
    off = jnp.where(jnp.eye(n, dtype=bool), 0.0, jnp.square(logits))
    return -2 * jnp.mean(jnp.diagonal(logits)) + jnp.sum(off) / (n * (n - 1)), logits


def vicreg(z1: jax.Array, z2: jax.Array, invariance: float, variance: float, covariance: float) -> jax.Array:
    """VICReg (Bardes et al. 2022): invariance * MSE + variance * hinge on the std + covariance * off-diagonal cov^2.

    z1, z2: [batch, dim]. Per view: std_j = sqrt(var_j + 1e-4) (unbiased variance over the batch), hinge =
    mean_j relu(1 - std_j); cov = centred z^T z / (batch - 1), penalty = sum_{i != j} cov_ij^2 / dim. The hinge and
    penalty terms are averaged / summed over the two views as in the paper's code (hinge halves, penalties summed).
    """
    n, dim = z1.shape

    def terms(z):
        z = z - jnp.mean(z, axis=0)
        std = jnp.sqrt(jnp.sum(jnp.square(z), axis=0) / (n - 1) + 1e-4)
        cov = z.T @ z / (n - 1)
        off = jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))
        return jnp.mean(jax.nn.relu(1 - std)) / 2, off / dim

    (s1, c1), (s2, c2) = terms(z1), terms(z2)
    return invariance * jnp.mean(jnp.square(z1 - z2)) + variance * (s1 + s2) + covariance * (c1 + c2)
