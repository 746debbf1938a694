"""jax.random's threefry numbers, bit for bit, written so that XLA:CPU can fuse them; used by the synthetic sampler.

jax's CPU lowering of the threefry-2x32 hash runs its 20 rounds as a 5-trip while loop over whole arrays (every
trip writes its intermediate arrays to memory). Here the same hash is plain straight-line jnp (what jax itself
emits on GPU/TPU), so XLA fuses it into one elementwise loop: about 6x faster random bits on CPU; with jax.random
in the sampler the synthetic train step takes 4-9% more CPU time (`experiments/bench_synthetic.py --parts` and
`--prng`, BENCHMARKS.md). The synthetic sampler (`cl_features.data.sparse_coding`, the draws of
`cl_features.augment.vectors`) uses it; everything else uses jax.random.

Every function returns exactly what its `jax.random` namesake returns for the same key (tests/test_prng.py
checks this bit for bit), so switching between them changes no number. Keys that are not threefry keys, raw
uint32 keys, non-float32 dtypes, or `jax_threefry_partitionable=False` are handed to `jax.random` unchanged."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of counter words (x1, x2) under key (k1, k2), all uint32, unrolled."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(group + 1) % 3]
        x2 = x2 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x1, x2


def _key_data(key) -> jax.Array | None:
    """The [..., 2] uint32 data of a typed threefry key when this module reproduces jax.random for it."""
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        return None
    if str(jax.random.key_impl(key)) != "threefry2x32" or not jax.config.jax_threefry_partitionable:
        return None
    return jax.random.key_data(key)


def _wrap(a: jax.Array, b: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(jnp.stack([a, b], axis=-1), impl="threefry2x32")


def _counters(shape: tuple[int, ...]) -> jax.Array:
    """The flat index of each element (the low word of jax's 64-bit counter; the high word is 0 here)."""
    n = math.prod(shape)
    if n >= 2**32:
        raise ValueError(f"cl_features.prng draws fewer than 2**32 numbers per call, asked for shape {shape}")
    return jax.lax.iota(jnp.uint32, max(n, 1)).reshape(shape) if shape else jnp.zeros((), jnp.uint32)


def fold_in(key: jax.Array, data) -> jax.Array:
    """jax.random.fold_in(key, data) for a single key; `data` may be an array (one key per element)."""
    kd = _key_data(key)
    data = jnp.asarray(data, dtype=jnp.uint32)
    if kd is None or key.ndim:
        if data.ndim:
            return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, data.reshape(-1)).reshape(data.shape)
        return jax.random.fold_in(key, data)
    return _wrap(*threefry2x32(kd[0], kd[1], jnp.zeros_like(data), data))


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """jax.random.split(key, num) for a single key."""
    kd = _key_data(key)
    if kd is None or key.ndim:
        return jax.random.split(key, num)
    return _wrap(*threefry2x32(kd[0], kd[1], jnp.zeros((num,), jnp.uint32), _counters((num,))))


def bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """jax.random.bits(key, shape, uint32)."""
    shape = tuple(int(s) for s in shape)
    kd = _key_data(key)
    if kd is None or key.ndim:
        return jax.random.bits(key, shape, jnp.uint32)
    count = _counters(shape)
    a, b = threefry2x32(kd[0], kd[1], jnp.zeros_like(count), count)
    return a ^ b


@functools.partial(jax.jit, static_argnames=("shape",))
def uniform(key: jax.Array, shape: tuple[int, ...], minval: float = 0.0, maxval: float = 1.0) -> jax.Array:
    """jax.random.uniform(key, shape, float32, minval, maxval)."""
    shape = tuple(int(s) for s in shape)
    if _key_data(key) is None or key.ndim:
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
    # Random mantissa under the exponent of 1.0 gives [1, 2); shift and scale as jax does.
    mantissa = (bits(key, shape) >> np.uint32(32 - 23)) | np.uint32(0x3F800000)
    floats = jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)
    lo, hi = jnp.float32(minval), jnp.float32(maxval)
    return jax.lax.max(lo, floats * (hi - lo) + lo)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """jax.random.normal(key, shape, dtype): erfinv of a uniform in (-1, 1), as jax does."""
    if jnp.dtype(dtype) != jnp.float32 or _key_data(key) is None or key.ndim:
        return jax.random.normal(key, shape, dtype)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    return jnp.float32(np.sqrt(2)) * jax.lax.erf_inv(uniform(key, shape, lo, 1.0))


@functools.partial(jax.jit, static_argnames=("shape",))
def bernoulli(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
    """jax.random.bernoulli(key, p, shape) for a float p (float32 uniforms, mode='low')."""
    if _key_data(key) is None or key.ndim:
        return jax.random.bernoulli(key, p, shape)
    return uniform(key, shape) < jnp.float32(p)
