"""Per-neuron cross-view correlation of the sparse and dense parts in the sparse coding model (docs/theory.md, 5).

For neuron w and a pair of views, the pre-activation on view k splits into a sparse part s_k = <w, A_k(Mz)>
and a dense part n_k = <w, A_k(xi)>. Masking decouples the views when Corr(n_1, n_2) ~ 0 while
Corr(s_1, s_2) stays high. `empirical` measures both per neuron on fresh samples; `predicted` gives the
closed form for view_k = s_k * x + e_k with independent coordinates (moments from
`cl_features.augment.vectors.moments`), for a part with covariance C:

    Cov = mu^2 w'Cw + (k12 - mu^2) sum_i w_i^2 C_ii
    Var = mu^2 w'Cw + (k11 - mu^2) sum_i w_i^2 C_ii + noise_var ||w||^2

with C = p M M^T for the sparse part (z_j iid, E z_j^2 = p) and C = sigma^2 I for the dense part.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cl_features.augment import vectors


def _corr(a: jax.Array, b: jax.Array) -> jax.Array:
    """Pearson correlation per column. a, b: [n, m] -> [m]."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    return jnp.sum(a * b, 0) / jnp.sqrt(jnp.maximum(jnp.sum(a * a, 0) * jnp.sum(b * b, 0), 1e-30))


def empirical(w: jax.Array, views: vectors.Views) -> dict[str, jax.Array]:
    """Per-neuron cross-view correlations of the sparse and dense pre-activations. w: [m, d1]."""
    return {
        "sparse_corr": _corr(views.sparse1 @ w.T, views.sparse2 @ w.T),
        "dense_corr": _corr(views.dense1 @ w.T, views.dense2 @ w.T),
    }


def _predicted_part(w: jax.Array, quad: jax.Array, diag: jax.Array, m: vectors.Moments) -> jax.Array:
    """quad [m] = w'Cw, diag [m] = sum_i w_i^2 C_ii."""
    sq_norm = jnp.sum(jnp.square(w), axis=1)
    mu2 = m.mu**2
    cov = mu2 * quad + (m.k12 - mu2) * diag
    var = mu2 * quad + (m.k11 - mu2) * diag + m.noise_var * sq_norm
    return cov / jnp.maximum(var, 1e-30)


def predicted(
    w: jax.Array,
    dictionary: jax.Array,
    *,
    sparsity: float,
    sigma: float,
    augmentation: str,
    params: vectors.AugmentParams = vectors.AugmentParams(),
) -> dict[str, jax.Array]:
    """Closed-form per-neuron correlations {'sparse_corr', 'dense_corr'} for `augmentation`."""
    mom = vectors.moments(augmentation, params)
    coef = w @ dictionary  # [m, d]
    sparse_quad = sparsity * jnp.sum(jnp.square(coef), axis=1)
    sparse_diag = sparsity * (jnp.square(w) @ jnp.sum(jnp.square(dictionary), axis=1))
    dense_quad = sigma**2 * jnp.sum(jnp.square(w), axis=1)
    return {
        "sparse_corr": _predicted_part(w, sparse_quad, sparse_diag, mom["sparse"]),
        "dense_corr": _predicted_part(w, dense_quad, dense_quad, mom["dense"]),
    }
