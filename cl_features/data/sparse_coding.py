"""The paper's sparse coding model: x = M z + xi (docs/theory.md, section 1).

- M: [d1, d] column-orthonormal dictionary ("orthogonal": QR of a Gaussian, spread out over coordinates;
  "identity": the first d coordinate axes, a negative control in which masking cannot decouple).
- z: [d] in {-1, 0, +1}, coordinates independent, P(z_j != 0) = sparsity, sign symmetric (sparse features).
- xi: [d1] ~ N(0, sigma^2 I) (dense features).

Example i draws from fold_in(step_key, global index i) through `cl_features.prng`, so a batch does not depend
on the device or process count.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from cl_features import prng

DICTIONARY_KINDS = ("orthogonal", "identity")


class SparseBatch(NamedTuple):
    """One batch of the sparse coding model and its parts."""

    x: jax.Array  # [batch, d1] = mz + xi
    z: jax.Array  # [batch, d] sparse code in {-1, 0, 1}
    mz: jax.Array  # [batch, d1] sparse signal M z
    xi: jax.Array  # [batch, d1] dense noise


def make_dictionary(key: jax.Array, d1: int, d: int, kind: str = "orthogonal") -> jax.Array:
    """Returns M: [d1, d] with orthonormal columns."""
    if kind not in DICTIONARY_KINDS:
        raise ValueError(f"data.dictionary must be one of {DICTIONARY_KINDS}, got {kind!r}")
    if d > d1:
        raise ValueError(f"data.d1 must be >= data.d (got d1={d1}, d={d})")
    if kind == "identity":
        return jnp.eye(d1, d, dtype=jnp.float32)
    g = jax.random.normal(key, (d1, d), dtype=jnp.float32)
    q, r = jnp.linalg.qr(g)
    # Fix the sign ambiguity of QR so the dictionary is a deterministic function of the key.
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def fair_words(key: jax.Array, n: int) -> jax.Array:
    """n fair coin flips packed 32 to a random word: uint32 [ceil(n / 32)] (`unpack_bits` gives the 0/1 values)."""
    return prng.bits(key, ((n + 31) // 32,))


def unpack_bits(words: jax.Array, n: int) -> jax.Array:
    """words: uint32 [..., W] -> 0/1 float32 [..., n] (bit j of word i is value 32 i + j; n <= 32 W)."""
    bits = (words[..., :, None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
    return bits.reshape(*words.shape[:-1], -1)[..., :n].astype(jnp.float32)


def fair_bits(key: jax.Array, n: int) -> jax.Array:
    """n independent Bernoulli(1/2) values as 0/1 float32 [n], 32 from each random word (cheaper than bernoulli)."""
    return unpack_bits(fair_words(key, n), n)


def sample_example(key: jax.Array, dictionary: jax.Array, sparsity: float, sigma: float) -> SparseBatch:
    """One example: (x, z, mz, xi) with shapes [d1], [d], [d1], [d1]."""
    d1, d = dictionary.shape
    k_support, k_sign, k_noise = prng.split(key, 3)
    active = prng.bernoulli(k_support, sparsity, (d,))
    sign = 2.0 * fair_bits(k_sign, d) - 1.0
    z = jnp.where(active, sign, 0.0).astype(jnp.float32)
    mz = dictionary @ z
    xi = sigma * prng.normal(k_noise, (d1,))
    return SparseBatch(x=mz + xi, z=z, mz=mz, xi=xi)


def example_keys(key: jax.Array, example_ids: jax.Array) -> jax.Array:
    """Per-example keys [batch] from global example ids [batch]."""
    return prng.fold_in(key, example_ids)


def sample(
    key: jax.Array,
    dictionary: jax.Array,
    batch_size: int,
    sparsity: float,
    sigma: float,
    example_ids: jax.Array | None = None,
) -> SparseBatch:
    """A batch of `batch_size` examples; example i uses fold_in(key, example_ids[i]) (default arange)."""
    if example_ids is None:
        example_ids = jnp.arange(batch_size, dtype=jnp.uint32)
    keys = example_keys(key, example_ids)
    batch = jax.vmap(sample_example, in_axes=(0, None, None, None))(keys, dictionary, sparsity, sigma)
    # Mz for the whole batch as one matmul (the vmapped matvec is the same maths, just slower on CPU).
    mz = batch.z @ dictionary.T
    return SparseBatch(x=mz + batch.xi, z=batch.z, mz=mz, xi=batch.xi)
