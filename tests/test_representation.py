"""Representation-level measurements, t-SNE maps and feature visualisation on encoders built in the test."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage
from flax import nnx

from cl_features.data import photos
from cl_features.measure import correlation, feature_vis, image_stats, ridge, tsne
from cl_features.measure import representation as R
from cl_features.models import resnet


class ColourNet(nnx.Module):
    """A 1x1 'conv' with fixed weights: stem = x @ w + b (pre-activation), stage1 = relu(stem),
    features = spatial mean of stage1. Everything has a NumPy closed form."""

    def __init__(self, w, b):
        self.w = nnx.Param(jnp.asarray(w, jnp.float32))  # [3, c]
        self.b = nnx.Param(jnp.asarray(b, jnp.float32))  # [c]

    def __call__(self, x, *, return_intermediates=False):
        stem = x @ self.w[...] + self.b[...]
        stage1 = jax.nn.relu(stem)
        feats = jnp.mean(stage1, axis=(1, 2))
        return (feats, {"stage1": stage1, "stem": stem}) if return_intermediates else feats


W = np.array([[1.0, -1.0, 0.0], [-1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])  # channels: R - G, B - R, (G + B) / 2
B = np.array([0.0123, -0.0071, -0.40321])  # off the uint8 grid: no ties at the thresholds


@pytest.fixture(scope="module")
def crops():
    x, y, names = photos.load_photo_crops(size=16, crops_per_image=24, split="test")
    return x, y


def _reference(x, pre=lambda v: v, threshold=0.0):
    v = pre(x.astype(np.float64) / 255.0)
    stem = v @ W + B
    stage1 = np.maximum(stem, 0)
    return {
        "stem": (stem.mean((1, 2)), (stem > threshold).mean((1, 2))),
        "stage1": (stage1.mean((1, 2)), (stage1 > threshold).mean((1, 2))),
    }, stage1.mean((1, 2))


def test_encoder_outputs_match_numpy_and_do_not_depend_on_batching(crops):
    x = crops[0][:37]
    model = ColourNet(W, B)
    pre = lambda v: 2.0 * v - 0.5  # noqa: E731
    ref, feats = _reference(x, lambda v: 2.0 * v - 0.5, threshold=0.1)
    for bs in (8, 64):
        out = R.outputs_fn(model, batch_size=bs, preprocess=pre, threshold=0.1)(x)
        assert out.layers == ("stem", "stage1")
        np.testing.assert_allclose(out.features, feats, atol=1e-5)
        for layer, (pooled, active) in ref.items():
            np.testing.assert_allclose(out.pooled[layer], pooled, atol=1e-5)
            np.testing.assert_allclose(out.active[layer], active, atol=1e-6)


class BNNet(nnx.Module):
    """ColourNet behind a BatchNorm with non-trivial running statistics."""

    def __init__(self):
        self.bn = nnx.BatchNorm(3, use_running_average=False, rngs=nnx.Rngs(0))
        self.bn.mean[...] = jnp.array([0.2, 0.5, 0.4])
        self.bn.var[...] = jnp.array([0.04, 0.09, 0.25])
        self.net = ColourNet(W, B)

    def __call__(self, x, *, return_intermediates=False):
        return self.net(self.bn(x), return_intermediates=return_intermediates)


def test_encoder_outputs_use_batchnorm_running_statistics(crops):
    model = BNNet()
    x = crops[0][:6]
    one = R.outputs_fn(model, batch_size=1)(x)
    fn = R.outputs_fn(model, batch_size=6)
    six = fn(x)
    np.testing.assert_allclose(one.features, six.features, rtol=1e-5, atol=1e-6)  # rows independent
    ref = np.maximum((x / 255.0 - [0.2, 0.5, 0.4]) / np.sqrt(np.array([0.04, 0.09, 0.25]) + 1e-5) @ W + B, 0)
    np.testing.assert_allclose(six.features, ref.mean((1, 2)), atol=1e-4)
    assert model.bn.use_running_average is False  # the caller's model stays in train mode
    model.net.b[...] = model.net.b[...] + 1.0  # the same compiled function reads the updated arrays
    np.testing.assert_allclose(fn(x).pooled["stem"], six.pooled["stem"] + 1.0, atol=1e-5)


def test_layer_order():
    assert R.layer_order(["stage10", "final", "stage2", "stem", "aux"]) == ["stem", "stage2", "stage10", "final", "aux"]


def test_activation_density_known_values():
    active = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # channel 0 always, channel 1 once
    d = R.activation_density(active, dense_unit=0.9)
    assert d["density"] == pytest.approx(5 / 8)
    assert d["image_density_std"] == pytest.approx(np.std([1.0, 0.5, 0.5, 0.5]))
    assert d["dense_units"] == 0.5 and d["dead_units"] == 0.0
    assert R.activation_density(np.zeros((3, 4)))["dead_units"] == 1.0
    with pytest.raises(ValueError, match="active"):
        R.activation_density(np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="dense_unit"):
        R.activation_density(active, dense_unit=0.0)


def test_channel_correlation_identical_views_one_shuffled_views_near_zero(crops):
    x = crops[0]
    model = ColourNet(W, B)
    out = R.outputs_fn(model)(x)
    same = correlation.cross_view_correlation(out.pooled["stage1"], out.pooled["stage1"])
    np.testing.assert_allclose(same, 1.0)
    other = R.outputs_fn(model)(x[np.random.default_rng(1).permutation(len(x))])
    table = R.layer_table(out, {"same": (out, out), "shuffled": (out, other)})
    for layer in ("stem", "stage1", "features"):
        assert table[layer]["corr/same"] == pytest.approx(1.0)
        assert abs(table[layer]["corr/shuffled"]) < 0.25
    assert table["stage1"]["channels"] == 3 and "density" not in table["features"]


def test_reliance_of_a_statistic_against_itself_is_one(crops):
    x = crops[0].astype(np.float32) / 255.0
    hist = image_stats.colour_histogram(x)
    assert ridge.heldout_r2(hist, hist, l2=1e-8) == pytest.approx(1.0, abs=1e-6)
    noise = np.random.default_rng(0).normal(size=(len(x), 4))
    assert ridge.heldout_r2(noise, hist, l2=R.L2_GRID) < 0.1
    rel = R.statistic_reliance(hist, {"h": hist, "m": image_stats.mean_colour(x)}, l2=1e-8)
    assert rel["h"] == pytest.approx(1.0, abs=1e-6)
    assert rel["m"] > 0.99  # the mean colour is nearly linear in the soft histogram


def test_reliance_chooses_l2_on_training_rows_only():
    """Few rows, many noisy features: the smallest penalty overfits (negative held-out R^2), the grid picks a
    larger one. Changing the held-out rows' targets does not change the choice (only the score)."""
    rng = np.random.default_rng(0)
    n, d = 60, 50
    x = rng.normal(size=(n, d))
    y = x[:, :1] + 0.5 * rng.normal(size=(n, 1))
    small = ridge.heldout_r2(x, y, l2=1e-6)
    grid = ridge.heldout_r2(x, y, l2=(1e-6, 1e-2, 1.0, 100.0))
    assert small < 0.2 and grid > small + 0.2
    best = max(ridge.heldout_r2(x, y, l2=v) for v in (1e-6, 1e-2, 1.0, 100.0))
    assert grid <= best + 1e-12  # no better than the best held-out choice (it never saw those rows)
    test_rows = np.random.default_rng(0).permutation(n)[int(round(0.7 * n)) :]
    y2 = y.copy()
    y2[test_rows] = rng.normal(size=(len(test_rows), 1))
    chosen = [
        v
        for v in (1e-6, 1e-2, 1.0, 100.0)
        if ridge.heldout_r2(x, y, l2=(1e-6, 1e-2, 1.0, 100.0)) == ridge.heldout_r2(x, y, l2=v)
    ]
    assert ridge.heldout_r2(x, y2, l2=(1e-6, 1e-2, 1.0, 100.0)) == ridge.heldout_r2(x, y2, l2=chosen[0])


def test_training_on_a_dense_target_raises_dense_reliance(crops):
    """A few Adam steps of a tiny ResNet + linear head regressing the colour histogram: the representation
    then explains the histogram far better than at init."""
    x = crops[0].astype(np.float32) / 255.0
    target = jnp.asarray(image_stats.colour_histogram(x), jnp.float32)
    enc = resnet.build_encoder("resnet_tiny", rngs=nnx.Rngs(0))
    model = nnx.List([enc, nnx.Linear(enc.feat_dim, target.shape[1], rngs=nnx.Rngs(1))])
    outputs = R.outputs_fn(enc)
    before = ridge.heldout_r2(outputs(x).features, image_stats.colour_histogram(x), l2=R.L2_GRID)
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, xb, yb):
        def loss(m):
            return jnp.mean((m[1](m[0](xb)) - yb) ** 2)

        opt.update(model, nnx.grad(loss)(model))

    xs = jnp.asarray(x)
    for i in range(25):
        idx = np.random.default_rng(i).choice(len(x), 48, replace=False)
        step(model, opt, xs[idx], target[idx])
    after = ridge.heldout_r2(outputs(x).features, image_stats.colour_histogram(x), l2=R.L2_GRID)
    print(f"dense reliance {before:.3f} -> {after:.3f}")
    assert after > before + 0.2, (before, after)


# ------------------------------------------------------------------------------------------------- t-SNE


def test_tsne_separates_blobs_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    labels = np.repeat(np.arange(3), 30)
    feats = centres[labels] + rng.normal(size=(90, 16))
    a = tsne.embed(feats, perplexity=10, seed=0, max_iter=250, normalise=False)
    b = tsne.embed(feats, perplexity=10, seed=0, max_iter=250, normalise=False)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (90, 2)
    assert tsne.separation(a, labels) > 0.5
    assert abs(tsne.separation(a, rng.permutation(labels))) < 0.15
    path = tmp_path / "t.png"
    tsne.figure({"x": a, "y": b}, labels, str(path), class_names=["a", "b", "c"])
    assert path.stat().st_size > 5000
    with pytest.raises(ValueError, match="perplexity"):
        tsne.embed(feats, perplexity=100)


# --------------------------------------------------------------------------------- feature visualisation


def test_jitter_and_blur_match_numpy_and_scipy():
    img = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(feature_vis.jitter_image(jnp.asarray(img), (2, -3)), np.roll(img, (2, -3), (0, 1)))
    sigma = 0.8
    radius = int(np.ceil(2 * sigma))
    ref = scipy.ndimage.gaussian_filter(
        img.astype(np.float64), (sigma, sigma, 0), mode="mirror", truncate=radius / sigma
    )
    np.testing.assert_allclose(feature_vis.blur_image(jnp.asarray(img), sigma), ref, atol=1e-5)
    const = np.full((8, 8, 3), 0.3, np.float32)
    np.testing.assert_allclose(feature_vis.blur_image(jnp.asarray(const), 1.0), const, atol=1e-6)


def test_colour_preconditioner_is_spd_with_unit_top_eigenvalue():
    s = feature_vis.colour_preconditioner()
    np.testing.assert_allclose(s, s.T)
    ev = np.linalg.eigvalsh(s)
    assert ev.min() > 0 and ev.max() == pytest.approx(1.0)


def test_activation_maximisation_finds_the_preferred_colour(tmp_path):
    """Channel 0 is R - G and channel 1 is B - R (1x1 weights): the images that maximise them are red without
    green, and blue without red; the channel's activation rises from the starting noise. With the colour
    decorrelation colour moves more slowly, but in the same direction."""
    model = ColourNet(W, B)
    kw = dict(key=jax.random.key(0), size=12, steps=40, learning_rate=0.05)
    res = feature_vis.visualise_channels(model, "stem", [0, 1], decorrelate=False, **kw)
    assert res.images.shape == (2, 12, 12, 3)
    assert res.images.min() >= 0 and res.images.max() <= 1
    mean = res.images.mean(axis=(1, 2))
    assert mean[0, 0] > 0.95 and mean[0, 1] < 0.05
    assert mean[1, 2] > 0.95 and mean[1, 0] < 0.05
    assert np.all(res.activation > res.activation_init + 0.9)
    again = feature_vis.visualise_channels(model, "stem", [0, 1], decorrelate=False, **kw)
    np.testing.assert_array_equal(res.images, again.images)
    dec = feature_vis.visualise_channels(model, "stem", [0, 1], decorrelate=True, **kw)
    dmean = dec.images.mean(axis=(1, 2))
    assert dmean[0, 0] > dmean[0, 1] + 0.3 and dmean[1, 2] > dmean[1, 0] + 0.3
    assert np.all(dec.activation_init + 0.3 < dec.activation) and np.all(dec.activation <= res.activation + 1e-6)
    path = tmp_path / "g.png"
    feature_vis.grid_figure({"a": res.images, "b": dec.images}, str(path), channels=[0, 1])
    assert path.stat().st_size > 2000


def test_activation_maximisation_rejects_bad_layers_and_channels():
    model = ColourNet(W, B)
    with pytest.raises(ValueError, match="layer must be 'features' or one of"):
        feature_vis.visualise_channels(model, "stage9", [0], key=jax.random.key(0), size=8, steps=1)
    with pytest.raises(ValueError, match="channels must be < 3"):
        feature_vis.visualise_channels(model, "stage1", [3], key=jax.random.key(0), size=8, steps=1)
    with pytest.raises(ValueError, match="jitter"):
        feature_vis.visualise_channels(model, "stage1", [0], key=jax.random.key(0), size=8, jitter=8)
