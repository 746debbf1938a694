"""Feature recovery: do the neurons learn the dictionary atoms? (docs/theory.md, section 6)

W: [m, d1] neuron weights (rows w_i); M: [d1, d] dictionary (orthonormal columns M_j).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cosine_matrix(w: jax.Array, dictionary: jax.Array) -> jax.Array:
    """|cos(w_i, M_j)|: [m, d]."""
    norms = jnp.maximum(jnp.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    m_norms = jnp.maximum(jnp.linalg.norm(dictionary, axis=0, keepdims=True), 1e-12)
    return jnp.abs((w / norms) @ (dictionary / m_norms))


def recovery(w: jax.Array, dictionary: jax.Array, threshold: float = 0.9) -> dict[str, jax.Array]:
    """Per-atom best alignment and summary numbers.

    Returns: atom_best [d] = max_i |cos(w_i, M_j)|; recovered_fraction = mean(atom_best >= threshold);
    span_share [m] = ||P_M w_i||^2 / ||w_i||^2 and its mean; atoms_per_neuron [m] = participation ratio
    (sum_j c_ij^2)^2 / sum_j c_ij^4 of c_ij = <w_i, M_j> (1 for a single atom, k for k equal atoms).
    """
    cos = cosine_matrix(w, dictionary)
    atom_best = jnp.max(cos, axis=0)
    coef = w @ dictionary  # [m, d]
    sq = jnp.square(coef)
    in_span = jnp.sum(sq, axis=1)
    span_share = in_span / jnp.maximum(jnp.sum(jnp.square(w), axis=1), 1e-24)
    atoms_per_neuron = jnp.square(in_span) / jnp.maximum(jnp.sum(jnp.square(sq), axis=1), 1e-30)
    return {
        "atom_best": atom_best,
        "recovered_fraction": jnp.mean(atom_best >= threshold),
        "span_share": span_share,
        "span_share_mean": jnp.mean(span_share),
        "atoms_per_neuron": atoms_per_neuron,
    }


def sorted_cosines(w: jax.Array, dictionary: jax.Array) -> jax.Array:
    """|cos| [m, d] with neurons sorted by their best atom, then by that alignment (for the heatmap)."""
    cos = cosine_matrix(w, dictionary)
    best_atom = jnp.argmax(cos, axis=1)
    best = jnp.max(cos, axis=1)
    order = jnp.lexsort((-best, best_atom))
    return cos[order]
