"""Collapse of a representation h: [batch, m]: the singular values of the centred batch and their effective rank
exp(entropy of s / sum s) (Roy & Vetterli 2007; k for k equal values, 0 for a constant h). Collapsed: effective
rank below `COLLAPSED_BELOW`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

COLLAPSED_BELOW = 2.0


def spectrum(h: jax.Array) -> jax.Array:
    """Singular values of the centred h: [batch, m] -> [min(batch, m)], descending.

    Values below 1e-5 ||h||_F are float32 rounding of the centring (~1e-7 ||h||_F for equal rows) and set to 0.
    """
    h = h.astype(jnp.float32)
    s = jnp.linalg.svd(h - jnp.mean(h, axis=0), compute_uv=False)
    return jnp.where(s > 1e-5 * jnp.linalg.norm(h), s, 0.0)


def effective_rank(s: jax.Array) -> jax.Array:
    """exp(-sum_k p_k log p_k), p = s / sum(s); 0 when every s_k is 0. s: [k] singular values."""
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, jnp.exp(entropy), 0.0)


def collapse(h: jax.Array) -> dict:
    """effective_rank, top_singular_share (the top direction's share of the variance, s_1^2 / sum s^2), collapsed."""
    s = spectrum(h)
    rank = float(effective_rank(s))
    var = float(jnp.sum(jnp.square(s)))
    top = float(jnp.square(s[0])) / var if var > 0 else 1.0
    return {"effective_rank": rank, "top_singular_share": top, "collapsed": rank < COLLAPSED_BELOW}
