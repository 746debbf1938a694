import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cl_features.augment import vectors
from cl_features.data import sparse_coding
from cl_features.measure import linear_probe, neuron_correlation, recovery

D1, D = 128, 16


@pytest.fixture(scope="module")
def dictionary():
    return sparse_coding.make_dictionary(jax.random.key(0), D1, D)


def test_recovery_of_exact_atoms(dictionary):
    w = 3.0 * dictionary.T  # neurons = atoms (scaled)
    r = recovery.recovery(w, dictionary)
    assert float(r["recovered_fraction"]) == 1.0
    np.testing.assert_allclose(r["span_share"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(r["atoms_per_neuron"], 1.0, rtol=1e-4)
    # Two atoms mixed equally: participation ratio 2, |cos| = 1/sqrt(2) < 0.9.
    mixed = (dictionary[:, :1] + dictionary[:, 1:2]).T
    r2 = recovery.recovery(mixed, dictionary)
    np.testing.assert_allclose(r2["atoms_per_neuron"], 2.0, rtol=1e-4)
    np.testing.assert_allclose(r2["atom_best"][:2], 1 / np.sqrt(2), rtol=1e-5)


def test_recovery_of_random_weights_is_near_zero(dictionary):
    w = jax.random.normal(jax.random.key(1), (64, D1))
    r = recovery.recovery(w, dictionary)
    assert float(r["recovered_fraction"]) == 0.0
    # Random w: span share ~ d / d1.
    assert abs(float(r["span_share_mean"]) - D / D1) < 0.05
    assert float(jnp.max(r["atom_best"])) < 0.6


def test_sorted_cosines_is_a_row_permutation(dictionary):
    w = jax.random.normal(jax.random.key(2), (8, D1))
    a = np.sort(np.asarray(recovery.cosine_matrix(w, dictionary)), axis=0)
    b = np.sort(np.asarray(recovery.sorted_cosines(w, dictionary)), axis=0)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def _views(name, dictionary, n=20000, p=0.2, sigma=0.5, params=vectors.AugmentParams(sigma=0.5)):
    data = sparse_coding.sample(jax.random.key(3), dictionary, n, p, sigma)
    keys = sparse_coding.example_keys(jax.random.key(4), jnp.arange(n, dtype=jnp.uint32))
    return vectors.augment_parts(name, keys, data.mz, data.xi, params)


@pytest.mark.parametrize("name", ["complementary_mask", "none", "independent_mask", "gaussian_noise", "dense_mask"])
def test_empirical_decoupling_matches_prediction(name, dictionary):
    params = vectors.AugmentParams(keep_prob=0.5, noise_std=1.0, sigma=0.5)
    # Neurons: exact atoms, a mixture, and random directions.
    w = jnp.concatenate([dictionary.T[:4], jax.random.normal(jax.random.key(5), (4, D1))])
    emp = neuron_correlation.empirical(w, _views(name, dictionary, params=params))
    pred = neuron_correlation.predicted(w, dictionary, sparsity=0.2, sigma=0.5, augmentation=name, params=params)
    # 20000 samples: the standard error of a correlation is < 0.01.
    np.testing.assert_allclose(emp["dense_corr"], pred["dense_corr"], atol=0.04)
    np.testing.assert_allclose(emp["sparse_corr"], pred["sparse_corr"], atol=0.04)


def test_decoupling_analytic_values(dictionary):
    w = dictionary.T[:3]
    comp = neuron_correlation.predicted(w, dictionary, sparsity=0.2, sigma=0.5, augmentation="complementary_mask")
    none = neuron_correlation.predicted(w, dictionary, sparsity=0.2, sigma=0.5, augmentation="none")
    ind = neuron_correlation.predicted(
        w,
        dictionary,
        sparsity=0.2,
        sigma=0.5,
        augmentation="independent_mask",
        params=vectors.AugmentParams(keep_prob=0.25),
    )
    np.testing.assert_allclose(comp["dense_corr"], 0.0, atol=1e-6)
    np.testing.assert_allclose(none["dense_corr"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(none["sparse_corr"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ind["dense_corr"], 0.25, rtol=1e-5)  # Corr = q for independent masks
    # A neuron w = M_j under complementary masking: Corr = (1 - r) / (1 + r), r = sum_i M_ij^2 sum_k M_ik^2
    # (the masks break the orthogonality to the other active atoms); r ~ d / d1 for a spread-out dictionary.
    m = np.asarray(dictionary, np.float64)
    r = (m[:, :3] ** 2 * (m**2).sum(1, keepdims=True)).sum(0)
    np.testing.assert_allclose(comp["sparse_corr"], (1 - r) / (1 + r), rtol=1e-4)
    np.testing.assert_allclose(r, D / D1, rtol=0.3)
    assert np.all(np.asarray(comp["sparse_corr"]) > 0.7)


def test_identity_dictionary_cannot_decouple():
    eye = sparse_coding.make_dictionary(jax.random.key(0), D1, D, "identity")
    pred = neuron_correlation.predicted(eye.T[:3], eye, sparsity=0.2, sigma=0.5, augmentation="complementary_mask")
    np.testing.assert_allclose(pred["sparse_corr"], 0.0, atol=1e-6)


def test_ridge_probe_on_perfect_and_useless_features():
    rng = np.random.default_rng(0)
    z = rng.choice([-1.0, 0.0, 1.0], size=(4000, 8), p=[0.2, 0.6, 0.2])
    u = rng.normal(size=(8, 3))
    y = np.sign(z @ u)
    acc = linear_probe.ridge_binary_accuracy(z[:2000], y[:2000], z[2000:], y[2000:])
    assert np.all(acc > 0.97)
    noise = rng.normal(size=(4000, 8))
    acc = linear_probe.ridge_binary_accuracy(noise[:2000], y[:2000], noise[2000:], y[2000:])
    assert np.all(np.abs(acc - 0.5) < 0.06)


def test_ridge_probe_matches_augmented_least_squares():
    """sign of the ridge fit on [standardised x, 1] (the constant column penalised too), unlabelled rows skipped
    but counted in the penalty, against an explicit least-squares reference."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 5)) * np.array([1.0, 2.0, 0.5, 3.0, 1.0]) + 1.0
    y = np.sign(x @ rng.normal(size=(5, 3)) + 2.0 * rng.normal(size=(600, 3)))
    y[rng.random(y.shape) < 0.1] = 0.0
    l2 = 0.3
    tr, te = slice(0, 300), slice(300, None)
    got = linear_probe.ridge_binary_accuracy(x[tr], y[tr], x[te], y[te], l2)
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-8
    design = lambda v: np.concatenate([(v - mean) / std, np.ones((len(v), 1))], 1)  # noqa: E731
    a, b = design(x[tr]), design(x[te])
    want = []
    for t in range(3):
        keep, keep_te = y[tr, t] != 0, y[te, t] != 0
        stacked = np.concatenate([a[keep], np.sqrt(l2 * 300) * np.eye(6)])
        coef = np.linalg.lstsq(stacked, np.concatenate([y[tr][keep, t], np.zeros(6)]), rcond=None)[0]
        want.append(np.mean(np.sign(b[keep_te] @ coef) == y[te][keep_te, t]))
    np.testing.assert_array_equal(got, want)
    assert np.all(np.asarray(want) > 0.6)
