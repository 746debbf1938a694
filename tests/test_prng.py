"""cl_features.prng must return exactly what jax.random returns (the synthetic stream depends on it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_features import prng

SHAPES = [(), (1,), (5,), (3, 7), (512, 256), (2, 3, 5)]


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("shape", SHAPES)
def test_samplers_bit_identical(shape):
    key = jax.random.key(11)
    _same(prng.bits(key, shape), jax.random.bits(key, shape, jnp.uint32))
    _same(prng.uniform(key, shape), jax.random.uniform(key, shape))
    _same(prng.uniform(key, shape, -2.0, 3.5), jax.random.uniform(key, shape, minval=-2.0, maxval=3.5))
    _same(prng.normal(key, shape), jax.random.normal(key, shape))
    _same(prng.bernoulli(key, 0.3, shape), jax.random.bernoulli(key, 0.3, shape))


def test_bit_identical_under_jit_and_vmap():
    keys = jax.random.split(jax.random.key(3), 6)
    mine = jax.jit(jax.vmap(lambda k: (prng.normal(k, (9, 4)), prng.bernoulli(k, 0.05, (64,)))))(keys)
    ref = jax.jit(jax.vmap(lambda k: (jax.random.normal(k, (9, 4)), jax.random.bernoulli(k, 0.05, (64,)))))(keys)
    _same(mine[0], ref[0])
    _same(mine[1], ref[1])


def test_keys_bit_identical():
    key = jax.random.key(2024)
    for num in (1, 2, 3, 17):
        _same(jax.random.key_data(prng.split(key, num)), jax.random.key_data(jax.random.split(key, num)))
    for data in (0, 1, 7, 2**31 + 5):
        _same(jax.random.key_data(prng.fold_in(key, data)), jax.random.key_data(jax.random.fold_in(key, data)))
    ids = jnp.arange(100, dtype=jnp.uint32) * 7919
    ref = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, ids)
    _same(jax.random.key_data(prng.fold_in(key, ids)), jax.random.key_data(ref))
    # Under jit with a traced step, as the train loop uses it.
    step = jnp.int32(41)
    _same(jax.random.key_data(jax.jit(prng.fold_in)(key, step)), jax.random.key_data(jax.random.fold_in(key, step)))


def test_other_keys_are_handed_to_jax_random():
    rbg = jax.random.key(5, impl="rbg")
    _same(prng.normal(rbg, (4, 3)), jax.random.normal(rbg, (4, 3)))
    _same(jax.random.key_data(prng.split(rbg, 3)), jax.random.key_data(jax.random.split(rbg, 3)))
    key = jax.random.key(5)
    _same(prng.normal(key, (4,), jnp.bfloat16), jax.random.normal(key, (4,), jnp.bfloat16))


def test_hash_matches_the_published_test_vector():
    # Random123's known-answer test for Threefry-2x32-20 (key 0, counter 0).
    zero = jnp.zeros((), jnp.uint32)
    a, b = prng.threefry2x32(zero, zero, zero, zero)
    assert (int(a), int(b)) == (0x6B200159, 0x99BA4EFE)
