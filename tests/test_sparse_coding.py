import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_features.data import sparse_coding


def test_orthogonal_dictionary_is_orthonormal_and_spread_out():
    m = np.asarray(sparse_coding.make_dictionary(jax.random.key(0), 512, 64, "orthogonal"), np.float64)
    np.testing.assert_allclose(m.T @ m, np.eye(64), atol=1e-5)
    # Spread out: no large entry, |M_ij| = O(sqrt(log d1 / d1)) (Gaussian-like entries of std 1/sqrt(d1)).
    assert np.abs(m).max() < 5.0 * np.sqrt(np.log(512) / 512)
    assert np.abs(m).max() < 0.25


def test_identity_dictionary_is_coordinate_aligned():
    m = np.asarray(sparse_coding.make_dictionary(jax.random.key(0), 32, 8, "identity"))
    np.testing.assert_array_equal(m, np.eye(32, 8))
    assert np.abs(m).max() == 1.0


def test_dictionary_is_deterministic_per_key():
    a = sparse_coding.make_dictionary(jax.random.key(3), 64, 16)
    b = sparse_coding.make_dictionary(jax.random.key(3), 64, 16)
    c = sparse_coding.make_dictionary(jax.random.key(4), 64, 16)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kind,d1,d,match", [("fourier", 8, 4, "data.dictionary"), ("orthogonal", 4, 8, "data.d1")])
def test_dictionary_bad_arguments(kind, d1, d, match):
    with pytest.raises(ValueError, match=match):
        sparse_coding.make_dictionary(jax.random.key(0), d1, d, kind)


def test_sample_statistics():
    d1, d, p, sigma, n = 128, 32, 0.1, 0.3, 20000
    m = sparse_coding.make_dictionary(jax.random.key(0), d1, d)
    b = jax.jit(sparse_coding.sample, static_argnums=(2,))(jax.random.key(1), m, n, p, sigma)
    z = np.asarray(b.z)
    assert set(np.unique(z)) <= {-1.0, 0.0, 1.0}
    # P(z_j != 0) = p, sign symmetric; 5-sigma binomial bounds.
    frac = (z != 0).mean()
    assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / z.size)
    assert abs((z > 0).sum() / (z != 0).sum() - 0.5) < 0.02
    # E ||xi||^2 = sigma^2 d1 (relative std of the mean: sqrt(2 / (d1 n))).
    xi_sq = (np.asarray(b.xi, np.float64) ** 2).sum(1).mean()
    assert abs(xi_sq / (sigma**2 * d1) - 1) < 5 * np.sqrt(2 / (d1 * n))
    np.testing.assert_allclose(b.mz, z @ np.asarray(m).T, atol=1e-5)
    np.testing.assert_allclose(b.x, b.mz + b.xi, atol=1e-6)
    # ||Mz||^2 = ||z||^2 for orthonormal M.
    np.testing.assert_allclose((np.asarray(b.mz) ** 2).sum(1), (z**2).sum(1), rtol=1e-4, atol=1e-4)


def test_examples_are_keyed_by_global_index():
    m = sparse_coding.make_dictionary(jax.random.key(0), 32, 8)
    full = sparse_coding.sample(jax.random.key(5), m, 16, 0.3, 0.5)
    ids = jnp.arange(8, 16, dtype=jnp.uint32)
    part = sparse_coding.sample(jax.random.key(5), m, 8, 0.3, 0.5, example_ids=ids)
    np.testing.assert_array_equal(part.xi, full.xi[8:])
    np.testing.assert_array_equal(part.z, full.z[8:])
    again = sparse_coding.sample(jax.random.key(5), m, 16, 0.3, 0.5)
    np.testing.assert_array_equal(again.x, full.x)
