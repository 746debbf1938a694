"""Tests for cl_features.measure.correlation and cl_features.measure.image_stats on inputs with known answers."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from cl_features.measure import correlation as C
from cl_features.measure import image_stats as S
from cl_features.measure import model_free as MF
from cl_features.measure import patch_codes as P
from cl_features.measure import ridge

# A 6x6 pattern (a plus sign) that no background produces by chance.
PLUS = np.zeros((6, 6), np.float32)
PLUS[2:4, :] = 1.0
PLUS[:, 2:4] = 1.0


def _permute_channels(images, rng):
    """images: [N, H, W, 3] -> each image's channels in an independent random order."""
    perms = np.stack([rng.permutation(3) for _ in range(len(images))])
    return np.take_along_axis(images, perms[:, None, None, :], axis=-1)


def _gray_structured(n, size, rng):
    """[n, size, size, 3]: gray background with 2-5 random 6x6 gray patterns (from a bank of 4) at random
    places, plus a per-image colour offset per channel. Structure is gray; colour is a dense, global tint."""
    bank = np.stack(
        [
            PLUS,
            np.tri(6, dtype=np.float32),
            np.eye(6, dtype=np.float32)[::-1],
            np.kron(np.eye(2, dtype=np.float32), np.ones((3, 3), np.float32)),
        ]
    )
    gray = np.full((n, size, size), 0.5, np.float32)
    for i in range(n):
        for _ in range(rng.integers(2, 6)):
            r, c = rng.integers(0, size - 5, 2)
            gray[i, r : r + 6, c : c + 6] += rng.choice([-0.3, 0.3]) * bank[rng.integers(len(bank))]
    offset = rng.uniform(-0.2, 0.2, size=(n, 1, 1, 3)).astype(np.float32)
    return np.clip(gray[..., None] + offset, 0.0, 1.0)


def _planted_pair(n, size, rng):
    """Two views of n images: independent noise backgrounds; the PLUS pattern, in half of the images (the
    same half in both views), 2 copies at random places chosen independently per view."""
    present = rng.random(n) < 0.5
    views = []
    for _ in range(2):
        v = rng.uniform(0.3, 0.7, size=(n, size, size, 3)).astype(np.float32)
        for i in np.flatnonzero(present):
            for _ in range(2):
                r, c = rng.integers(0, size - 5, 2)
                v[i, r : r + 6, c : c + 6] = 0.1 + 0.8 * PLUS[..., None]
        views.append(v)
    return views[0], views[1], present


def _plain_dictionary(atoms, patch_size=6):
    """A PatchDictionary with no whitening (mean 0, identity) and unit-norm atoms: [n_atoms, patch_dim]."""
    atoms = np.asarray(atoms, np.float64)
    atoms = atoms / np.linalg.norm(atoms, axis=1, keepdims=True)
    d = atoms.shape[1]
    return P.PatchDictionary(mean=np.zeros(d), whitening=np.eye(d), atoms=atoms, patch_size=patch_size)


def _gray_atom(pattern):
    """pattern: [p, p] -> [p*p*3], the same pattern in every channel, zero mean."""
    a = np.repeat(pattern[..., None], 3, axis=-1).reshape(-1).astype(np.float64)
    return a - a.mean()


@pytest.fixture(scope="module")
def gray_images():
    return _gray_structured(300, 20, np.random.default_rng(0))


@pytest.fixture(scope="module")
def gray_dictionary(gray_images):
    return P.fit_patch_dictionary(gray_images, n_atoms=16, n_patches=4000, iters=15, seed=0)


# ---------------------------------------------------------------------------------------------------------
# correlation.py


def test_pearson_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    b = 0.7 * a + rng.normal(size=(200, 5)) * np.array([0.1, 0.5, 1.0, 3.0, 10.0])
    got = C.cross_view_correlation(a.astype(np.float32), b)
    want = [np.corrcoef(a[:, j].astype(np.float32).astype(np.float64), b[:, j])[0, 1] for j in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(C.cross_view_correlation(a, -3 * a + 2), -np.ones(5), atol=1e-12)


def test_constant_columns_are_nan_and_summary_skips_them():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 4))
    b = a + 0.5 * rng.normal(size=(50, 4))
    a[:, 1] = 3.0  # constant in a
    b[:, 3] = 0.0  # constant in b
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corr = C.cross_view_correlation(a, b)
        s = C.summary(corr)
    assert np.isnan(corr[1]) and np.isnan(corr[3]) and np.all(np.isfinite(corr[[0, 2]]))
    assert s["n_dims"] == 2
    assert s["mean"] == pytest.approx(np.mean(corr[[0, 2]]))
    assert s["median"] == pytest.approx(np.median(corr[[0, 2]]))
    empty = C.summary([np.nan, np.nan])
    assert empty["n_dims"] == 0 and np.isnan(empty["mean"]) and np.isnan(empty["median"])


@pytest.mark.parametrize("n,p,l2", [(300, 10, 1e-3), (300, 10, 0.5), (300, 10, 0.0), (40, 100, 1e-2)])
def test_heldout_r2_matches_sklearn(n, p, l2):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, p)) * rng.uniform(0.1, 10.0, size=p) + 5.0
    y = x @ rng.normal(size=(p, 3)) + rng.normal(size=(n, 3)) * np.array([0.1, 1.0, 10.0])
    got = ridge.heldout_r2(x, y, l2=l2, train_frac=0.7, seed=4)
    perm = np.random.default_rng(4).permutation(n)
    n_train = round(0.7 * n)
    tr, te = perm[:n_train], perm[n_train:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    model = Ridge(alpha=l2 * n_train, solver="svd").fit((x[tr] - mu) / sd, y[tr])
    want = r2_score(y[te], model.predict((x[te] - mu) / sd), multioutput="uniform_average")
    assert got == pytest.approx(want, abs=1e-8)


def test_heldout_r2_self_is_one_and_noise_is_zero():
    rng = np.random.default_rng(3)
    stat = rng.normal(size=(1000, 6))
    assert ridge.heldout_r2(stat, stat) > 0.9999
    assert ridge.heldout_r2(stat, stat[:, 0]) > 0.9999
    noise = rng.normal(size=(1000, 6))
    r2 = ridge.heldout_r2(noise, stat)
    assert -0.05 < r2 < 0.02
    assert ridge.heldout_r2(stat, stat, seed=7) == ridge.heldout_r2(stat, stat, seed=7)


def test_correlation_bad_arguments():
    a = np.zeros((10, 3))
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        C.cross_view_correlation(a, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="N >= 2"):
        C.cross_view_correlation(a[:1], a[:1])
    with pytest.raises(ValueError, match="b must be finite"):
        C.cross_view_correlation(a, np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="features must be"):
        ridge.heldout_r2(np.zeros((10, 2, 2)), a)
    with pytest.raises(ValueError, match="same N"):
        ridge.heldout_r2(a, np.zeros((9, 3)))
    with pytest.raises(ValueError, match="l2"):
        ridge.heldout_r2(a, a, l2=-1.0)
    with pytest.raises(ValueError, match="train_frac"):
        ridge.heldout_r2(a, a, train_frac=1.0)
    with pytest.raises(ValueError, match="train_frac"):
        ridge.heldout_r2(a[:3], a[:3], train_frac=0.5)


# ---------------------------------------------------------------------------------------------------------
# Dense statistics.


def test_mean_colour_and_histogram_of_known_images():
    bins = 4
    centres = (np.arange(bins) + 0.5) / bins  # 0.125, 0.375, 0.625, 0.875
    img = np.empty((1, 2, 4, 3), np.float32)
    img[0, :, :, 0] = centres[[0, 0, 1, 3]]  # R: at bin centres -> a hard histogram
    img[0, :, :, 1] = 0.25  # G: half-way between centres 0 and 1
    img[0, :, :, 2] = [[0.0, 1.0, 0.5, 0.5]] * 2  # B: beyond the edge centres, and 0.5 (between 1 and 2)
    np.testing.assert_allclose(S.mean_colour(img), img.mean(axis=(1, 2)), rtol=1e-6)
    hist = S.colour_histogram(img, bins=bins).reshape(3, bins)
    np.testing.assert_allclose(hist[0], np.histogram(img[0, ..., 0], bins=bins, range=(0, 1))[0] / 8, atol=1e-6)
    np.testing.assert_allclose(hist[1], [0.5, 0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(hist[2], [0.25, 0.25, 0.25, 0.25], atol=1e-6)


def test_histogram_sums_to_one_and_keeps_the_mean():
    rng = np.random.default_rng(5)
    bins = 8
    x = rng.uniform(0.5 / bins, 1 - 0.5 / bins, size=(20, 9, 7, 3)).astype(np.float32)
    hist = S.colour_histogram(x, bins=bins).reshape(20, 3, bins)
    np.testing.assert_allclose(hist.sum(-1), 1.0, atol=1e-6)
    assert np.all(hist >= 0)
    centres = (np.arange(bins) + 0.5) / bins
    np.testing.assert_allclose(hist @ centres, S.mean_colour(x), atol=1e-6)


def test_low_frequency_energy_matches_scipy_dct():
    rng = np.random.default_rng(6)
    x = rng.uniform(size=(5, 12, 10, 3)).astype(np.float32)
    got = S.low_frequency_energy(x, k=4)
    lum = x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    want = np.abs(scipy.fft.dctn(lum, axes=(1, 2), norm="ortho")[:, :4, :4]).reshape(5, 16)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[:, 0], np.sqrt(120) * lum.mean(axis=(1, 2)), rtol=1e-9)


def test_dense_statistics_shapes_and_chunking():
    x = np.random.default_rng(7).uniform(size=(11, 8, 8, 3)).astype(np.float32)
    stats = S.dense_statistics(x, bins=5, k=3, chunk_size=4)
    assert {k: v.shape for k, v in stats.items()} == {
        "mean_colour": (11, 3),
        "colour_histogram": (11, 15),
        "low_frequency_energy": (11, 9),
    }
    whole = S.dense_statistics(jnp.asarray(x), bins=5, k=3, chunk_size=100)  # JAX arrays work too
    for name in stats:
        np.testing.assert_allclose(stats[name], whole[name], rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Patches, k-means and the dictionary.


def test_extract_patches_matches_loops():
    x = np.random.default_rng(8).uniform(size=(2, 9, 8, 3)).astype(np.float32)
    got = P.extract_patches(x, 3, stride=2)
    want = [[x[n, r : r + 3, c : c + 3].reshape(-1) for r in range(0, 7, 2) for c in range(0, 6, 2)] for n in range(2)]
    np.testing.assert_array_equal(got, np.array(want))


def test_spherical_kmeans_decreases_loss_and_recovers_planted_centroids():
    rng = np.random.default_rng(9)
    centres = rng.normal(size=(6, 20))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, 6, 3000)
    data = centres[labels] * rng.uniform(1.0, 2.0, size=(3000, 1)) + 0.05 * rng.normal(size=(3000, 20))
    atoms, loss = P.spherical_kmeans(data, 6, iters=20, seed=0)
    assert atoms.shape == (6, 20) and loss.shape == (21,)
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1.0, rtol=1e-12)
    assert np.all(np.diff(loss) <= 1e-12) and loss[-1] < loss[0]
    cos = centres @ atoms.T
    assert np.all(cos.max(axis=1) > 0.99)  # every planted centre has its own atom...
    assert len(set(cos.argmax(axis=1))) == 6  # ...and no two share one
    again, loss2 = P.spherical_kmeans(data, 6, iters=20, seed=0)
    np.testing.assert_array_equal(atoms, again)
    np.testing.assert_array_equal(loss, loss2)


def test_fit_patch_dictionary_whitens_and_is_deterministic(gray_images, gray_dictionary):
    d = gray_dictionary
    assert (d.patch_size, d.n_atoms, d.patch_dim) == (6, 16, 108)
    np.testing.assert_allclose(np.linalg.norm(d.atoms, axis=1), 1.0, rtol=1e-10)
    np.testing.assert_allclose(d.whitening, d.whitening.T, atol=1e-12)
    # On the same sample of patches, W C W = U diag(s / (s + zca_eps)) U^T.
    rng = np.random.default_rng(0)
    patches = P.normalise_patches(P._sample_patches(gray_images, 6, 4000, rng), d.contrast_eps)
    np.testing.assert_allclose(patches.mean(0), d.mean, atol=1e-12)
    cov = np.cov(patches.T, bias=True)
    s, u = np.linalg.eigh(cov)
    np.testing.assert_allclose(d.whitening @ cov @ d.whitening, (u * (s / (s + 0.1))) @ u.T, atol=1e-8)
    again = P.fit_patch_dictionary(gray_images, n_atoms=16, n_patches=4000, iters=15, seed=0)
    np.testing.assert_array_equal(again.atoms, d.atoms)
    other = P.fit_patch_dictionary(gray_images, n_atoms=16, n_patches=4000, iters=15, seed=1)
    assert not np.array_equal(other.atoms, d.atoms)


def test_sparse_codes_match_a_per_patch_reference(gray_images, gray_dictionary):
    d = gray_dictionary
    x = gray_images[:3]
    threshold = 1.0
    want_max, want_mean, nonzero = [], [], []
    for img in x:
        codes = []
        for r in range(0, 20 - 5, 2):
            for c in range(0, 20 - 5, 2):
                p = img[r : r + 6, c : c + 6].reshape(-1).astype(np.float64)
                p = (p - p.mean()) / np.sqrt(p.var() + d.contrast_eps)
                codes.append(np.maximum(d.atoms @ (d.whitening @ (p - d.mean)) - threshold, 0.0))
        codes = np.array(codes)
        want_max.append(codes.max(0))
        want_mean.append(codes.mean(0))
        nonzero.append(np.mean(codes > 0))
    got = P.sparse_statistics(x, d, threshold=threshold, stride=2, chunk_size=2)
    np.testing.assert_allclose(got["patch_codes_max"], want_max, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["patch_codes_mean"], want_mean, rtol=1e-4, atol=1e-4)
    assert np.mean(nonzero) < 0.3  # most per-position responses are exactly 0


# ---------------------------------------------------------------------------------------------------------
# The decoupling table on constructed views.


def test_identical_views_correlate_perfectly(gray_images, gray_dictionary):
    table = MF.view_table(gray_images, gray_images.copy(), {"rgb": gray_dictionary}, stride=2)
    assert list(table["stats"]) == [*S.DENSE_STATS, *(f"{s}/rgb" for s in P.SPARSE_STATS)]
    for name, row in table["stats"].items():
        assert row["corr_mean"] == pytest.approx(1.0, abs=1e-9), name
        assert row["corr_median"] == pytest.approx(1.0, abs=1e-9), name
        assert row["n_dims"] > 0
    assert table["dense_mean"] == pytest.approx(1.0) and table["ratio"]["rgb"] == pytest.approx(1.0)


def test_channel_permutation_decouples_colour_but_not_gray_structure(gray_images, gray_dictionary):
    views2 = _permute_channels(gray_images, np.random.default_rng(10))
    table = MF.view_table(gray_images, views2, {"rgb": gray_dictionary}, stride=2)
    colour = [table["stats"][s]["corr_mean"] for s in ("mean_colour", "colour_histogram")]
    sparse = [table["stats"][f"{s}/rgb"]["corr_mean"] for s in P.SPARSE_STATS]
    # Measured: colour 0.32 / 0.38, sparse 0.82 / 0.82 (the fitted atoms carry some colour too).
    assert max(colour) < 0.5
    assert min(sparse) > 0.75 and min(sparse) - max(colour) > 0.3
    assert table["stats"]["low_frequency_energy"]["corr_mean"] > 0.95  # luminance barely changes
    assert table["ratio"]["rgb"] < 0.8
    # A dictionary of gray, zero-mean atoms only sees the per-pixel channel sum: exactly invariant.
    rng = np.random.default_rng(11)
    gray_dict = _plain_dictionary([_gray_atom(p) for p in [PLUS, np.eye(6), rng.normal(size=(6, 6))]])
    codes1 = P.sparse_statistics(gray_images, gray_dict, stride=2)
    codes2 = P.sparse_statistics(views2, gray_dict, stride=2)
    for name in P.SPARSE_STATS:
        corr = C.cross_view_correlation(codes1[name], codes2[name])
        np.testing.assert_allclose(corr, 1.0, atol=1e-5)


def test_planted_atom_keeps_its_correlation():
    views1, views2, present = _planted_pair(300, 20, np.random.default_rng(12))
    rng = np.random.default_rng(13)
    atoms = [_gray_atom(PLUS)] + list(rng.normal(size=(5, 108)))
    codes1, codes2 = (P.sparse_statistics(v, _plain_dictionary(atoms))["patch_codes_max"] for v in (views1, views2))
    corr = C.cross_view_correlation(codes1, codes2)
    assert corr[0] > 0.95  # the planted atom: present in both views or in neither
    assert np.all(np.abs(corr[1:]) < 0.3)  # random atoms only see the independent backgrounds
    assert C.cross_view_correlation(codes1[:, 0], present.astype(float))[0] > 0.95
    # A fitted dictionary learns (shifted, blurred) copies of the pattern; the best of them keeps the
    # correlation, while atoms unlike the pattern (fitted to the noise) do not.
    fitted = P.fit_patch_dictionary(views1, n_atoms=16, n_patches=6000, iters=15, seed=0)
    canvas = np.full((1, 16, 16, 3), 0.5, np.float32)
    canvas[0, 5:11, 5:11] = 0.1 + 0.8 * PLUS[..., None]
    shifts = P.normalise_patches(P.extract_patches(canvas, 6)[0].astype(np.float64), fitted.contrast_eps)
    z = (shifts - fitted.mean) @ fitted.whitening  # the pattern at all 11x11 shifts, whitened
    likeness = np.max(z / np.linalg.norm(z, axis=1, keepdims=True) @ fitted.atoms.T, axis=0)  # [n_atoms]
    corr = C.cross_view_correlation(*(P.sparse_statistics(v, fitted)["patch_codes_max"] for v in (views1, views2)))
    j = int(np.argmax(likeness))
    assert likeness[j] > 0.7 and corr[j] > 0.9  # measured 0.79, 0.96
    assert np.median(corr[likeness < 0.4]) < 0.2


# ---------------------------------------------------------------------------------------------------------
# Bad arguments.


def test_image_stats_bad_arguments(gray_dictionary):
    x = np.full((4, 8, 8, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"images must be \[N, H, W, 3\]"):
        S.mean_colour(x[..., :2])
    with pytest.raises(ValueError, match="images must be floating"):
        S.mean_colour((x * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"images must hold finite values in \[0, 1\]"):
        S.mean_colour(x * 255)
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        S.colour_histogram(x, bins=1)
    with pytest.raises(ValueError, match="k must be <= min"):
        S.low_frequency_energy(x, k=9)
    with pytest.raises(ValueError, match="patch_size must be <= min"):
        P.fit_patch_dictionary(x, patch_size=9)
    with pytest.raises(ValueError, match="n_patches must be >= n_atoms"):
        P.fit_patch_dictionary(x, n_atoms=64, n_patches=10)
    with pytest.raises(ValueError, match="threshold must be"):
        P.sparse_statistics(x, gray_dictionary, threshold=-1.0)
    with pytest.raises(ValueError, match="stride must be an integer"):
        P.sparse_statistics(x, gray_dictionary, stride=0)
    with pytest.raises(ValueError, match="dictionary must be a PatchDictionary"):
        P.sparse_statistics(x, gray_dictionary.atoms)
    with pytest.raises(ValueError, match="dictionary.patch_size=6 exceeds"):
        P.sparse_statistics(x[:, :4, :4], gray_dictionary)
    with pytest.raises(ValueError, match="patch_size must be <= min"):
        P.extract_patches(x, 9)
    with pytest.raises(ValueError, match="stride must be an integer"):
        P.extract_patches(x, 3, stride=1.5)
    with pytest.raises(ValueError, match="views1 and views2 must have the same shape"):
        MF.view_table(x, x[:3], {"rgb": gray_dictionary})
    with pytest.raises(ValueError, match="atoms must be"):
        P.PatchDictionary(mean=np.zeros(108), whitening=np.eye(108), atoms=np.zeros((2, 5)), patch_size=6)
    with pytest.raises(ValueError, match="n_atoms=5 exceeds"):
        P.spherical_kmeans(np.eye(3)[[0, 1, 1, 1]] * [[1], [1], [0], [0]], 5)
