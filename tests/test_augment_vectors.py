import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_features.augment import vectors
from cl_features.data import sparse_coding


def _parts(n=4000, d1=64, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k1, (n, d1)), jax.random.normal(k2, (n, d1))


def _keys(n, seed=1):
    return sparse_coding.example_keys(jax.random.key(seed), jnp.arange(n, dtype=jnp.uint32))


def test_complementary_mask_identities():
    sparse, dense = _parts(64)
    v = vectors.augment_parts("complementary_mask", _keys(64), sparse, dense)
    x = sparse + dense
    np.testing.assert_allclose((v.view1 + v.view2) / 2, x, atol=1e-6)
    # Complementary supports: every coordinate is kept (x2) in exactly one view.
    s1 = np.asarray(v.view1 / x)
    s2 = np.asarray(v.view2 / x)
    assert set(np.unique(np.round(s1, 4))) <= {0.0, 2.0}
    np.testing.assert_allclose(s1 + s2, 2.0, atol=1e-4)
    np.testing.assert_array_equal(s1 == 0, s2 == 2)
    # The same mask is applied to both parts.
    np.testing.assert_array_equal(np.asarray(v.sparse1 / sparse) == 0, np.asarray(v.dense1 / dense) == 0)


@pytest.mark.parametrize("name", vectors.AUGMENTATIONS)
def test_moments_match_samples(name):
    """Empirical E[s1], E[s1^2], E[s1 s2], Var e against `moments` (used by the analytic prediction)."""
    params = vectors.AugmentParams(keep_prob=0.3, noise_std=0.7, sigma=2.0)
    n, d1 = 4000, 64
    ones = jnp.ones((n, d1))
    zeros = jnp.zeros((n, d1))
    keys = _keys(n)
    for part in ("sparse", "dense"):
        m = vectors.moments(name, params)[part]
        v_scale = (
            vectors.augment_parts(name, keys, ones, zeros, params)
            if part == "sparse"
            else vectors.augment_parts(name, keys, zeros, ones, params)
        )
        v_noise = vectors.augment_parts(name, keys, zeros, zeros, params)
        s1 = np.asarray(v_scale.sparse1 if part == "sparse" else v_scale.dense1) - np.asarray(
            v_noise.sparse1 if part == "sparse" else v_noise.dense1
        )
        s2 = np.asarray(v_scale.sparse2 if part == "sparse" else v_scale.dense2) - np.asarray(
            v_noise.sparse2 if part == "sparse" else v_noise.dense2
        )
        e1 = np.asarray(v_noise.sparse1 if part == "sparse" else v_noise.dense1)
        tol = 0.05 * max(1.0, m.k11)
        assert abs(s1.mean() - m.mu) < tol
        assert abs((s1**2).mean() - m.k11) < tol
        assert abs((s1 * s2).mean() - m.k12) < tol
        assert abs(e1.var() - m.noise_var) < 0.05 * max(1.0, m.noise_var)


def test_dense_mask_keeps_sparse_part():
    sparse, dense = _parts(16)
    v = vectors.augment_parts("dense_mask", _keys(16), sparse, dense)
    np.testing.assert_array_equal(v.sparse1, sparse)
    np.testing.assert_array_equal(v.sparse2, sparse)
    np.testing.assert_allclose((v.dense1 + v.dense2) / 2, dense, atol=1e-6)


def test_one_key_per_example_and_determinism():
    sparse, dense = _parts(8)
    keys = _keys(8)
    a1 = vectors.augment_parts("independent_mask", keys, sparse, dense).view1
    a2 = vectors.augment_parts("independent_mask", keys, sparse, dense).view1
    np.testing.assert_array_equal(a1, a2)
    # Example i depends only on its own key: a sub-batch reproduces the rows.
    b1 = vectors.augment_parts("independent_mask", keys[2:5], sparse[2:5], dense[2:5]).view1
    np.testing.assert_array_equal(b1, a1[2:5])


def test_unknown_name():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        vectors.check_name("cutout")


def test_fair_bits_are_fair_and_independent():
    bits = np.asarray(jax.vmap(lambda k: sparse_coding.fair_bits(k, 100))(_keys(4000)))
    assert bits.shape == (4000, 100) and set(np.unique(bits)) == {0.0, 1.0}
    assert abs(bits.mean() - 0.5) < 0.005
    # Every bit position is fair, and neighbouring positions (same or adjacent random word) are uncorrelated.
    assert np.abs(bits.mean(0) - 0.5).max() < 0.04
    c = np.corrcoef(bits.T)
    assert np.abs(c[np.triu_indices(100, 1)]).max() < 0.08


def test_packed_words_unpack_to_the_same_bits_batched():
    keys = _keys(16)
    words = jax.vmap(lambda k: sparse_coding.fair_words(k, 70))(keys)
    assert words.shape == (16, 3) and words.dtype == jnp.uint32
    per_example = jax.vmap(lambda k: sparse_coding.fair_bits(k, 70))(keys)
    np.testing.assert_array_equal(sparse_coding.unpack_bits(words, 70), per_example)
    w = np.asarray(words[0])
    expected = [(int(w[i // 32]) >> (i % 32)) & 1 for i in range(70)]
    np.testing.assert_array_equal(sparse_coding.unpack_bits(words[0], 70), expected)
