import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cl_features import objectives


def _np_info_nce(h1, h2, tau):
    h1, h2 = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    logits = h1 @ h2.T / tau
    mx = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - mx).sum(1)) + mx[:, 0]
    return np.mean(lse - np.diag(logits))


def _np_nt_xent(z1, z2, tau):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    sim = z @ z.T / tau
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        losses.append(-sim[i, j] + np.log(np.exp(sim[i, others]).sum()))
    return np.mean(losses)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_info_nce_matches_float64_reference(tau):
    k1, k2 = jax.random.split(jax.random.key(0))
    h1, h2 = jax.random.normal(k1, (16, 8)), jax.random.normal(k2, (16, 8))
    loss, logits = objectives.info_nce(h1, h2, tau)
    np.testing.assert_allclose(loss, _np_info_nce(h1, h2, tau), rtol=1e-5)
    assert logits.shape == (16, 16)


def test_info_nce_analytic_values():
    # Identical orthonormal rows: logits = I / tau, loss = log(e^{1/tau} + n - 1) - 1/tau.
    n, tau = 4, 0.5
    h = jnp.eye(n)
    loss, _ = objectives.info_nce(h, h, tau)
    np.testing.assert_allclose(loss, np.log(np.exp(1 / tau) + n - 1) - 1 / tau, rtol=1e-6)
    # All-zero features: uniform logits, loss = log n.
    loss, _ = objectives.info_nce(jnp.zeros((n, 3)), jnp.zeros((n, 3)), tau)
    np.testing.assert_allclose(loss, np.log(n), rtol=1e-6)


def test_info_nce_stops_gradient_through_second_view():
    k1, k2 = jax.random.split(jax.random.key(1))
    h1, h2 = jax.random.normal(k1, (8, 4)), jax.random.normal(k2, (8, 4))
    g1, g2 = jax.grad(lambda a, b: objectives.info_nce(a, b, 0.5)[0], argnums=(0, 1))(h1, h2)
    assert np.abs(np.asarray(g1)).sum() > 0
    np.testing.assert_array_equal(g2, 0.0)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_optax_and_float64(tau):
    k1, k2 = jax.random.split(jax.random.key(2))
    z1, z2 = jax.random.normal(k1, (12, 6)), jax.random.normal(k2, (12, 6))
    ours = objectives.nt_xent(z1, z2, tau)
    ref = optax.losses.ntxent(jnp.concatenate([z1, z2]), jnp.tile(jnp.arange(12), 2), tau)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    np.testing.assert_allclose(ours, _np_nt_xent(np.asarray(z1), np.asarray(z2), tau), rtol=1e-5)


def test_nt_xent_and_cosine_losses_finite_on_zero_rows():
    # An all-zero row (a symmetric thresholded ReLU with every unit below threshold) keeps finite gradients;
    # the loss still agrees with optax on the other rows' values.
    z1, z2 = jax.random.normal(jax.random.key(3), (2, 8, 5))
    z1 = z1.at[0].set(0.0)
    g = jax.grad(lambda a, b: objectives.nt_xent(a, b, 0.5), argnums=(0, 1))(z1, z2)
    assert all(np.isfinite(np.asarray(x)).all() for x in g)
    ref = optax.losses.ntxent(jnp.concatenate([z1, z2]), jnp.tile(jnp.arange(8), 2), 0.5)
    np.testing.assert_allclose(objectives.nt_xent(z1, z2, 0.5), ref, rtol=1e-5)
    for loss in (lambda a: objectives.simsiam(a, z2, z1, z2), lambda a: objectives.byol(a, z2, z1, z2)):
        assert np.isfinite(np.asarray(jax.grad(loss)(z1))).all()


def test_cross_entropy_and_l2_penalty():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, 2])
    ref = np.mean([np.log(np.exp([2.0, 0.0, -1.0]).sum()) - 2.0, np.log(3.0)])
    np.testing.assert_allclose(objectives.cross_entropy(logits, labels), ref, rtol=1e-6)
    params = {"a": jnp.ones((2, 3)), "b": jnp.full((4,), 2.0)}
    np.testing.assert_allclose(objectives.l2_penalty(params, 0.1), 0.05 * (6 + 16), rtol=1e-6)


def test_instance_accuracy():
    logits = jnp.array([[3.0, 1.0], [4.0, 2.0]])
    assert float(objectives.instance_accuracy(logits)) == 0.5
    # Ties are misses: a collapsed representation (all logits equal) scores 0, not 1/batch.
    assert float(objectives.instance_accuracy(jnp.zeros((4, 4)))) == 0.0
    logits = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 0.0, 4.0]])
    assert float(objectives.instance_accuracy(logits)) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 64)).astype(np.float32) + 2.0 * np.eye(64, dtype=np.float32)
    ref = np.mean(np.argmax(logits, axis=1) == np.arange(64))  # no ties in continuous values
    assert float(objectives.instance_accuracy(jnp.asarray(logits))) == ref


def _np_cos(a, b):
    return np.array([x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)])


def _views(seed, n=16, dim=8, count=4):
    keys = jax.random.split(jax.random.key(seed), count)
    return [jax.random.normal(k, (n, dim)) for k in keys]


def test_simsiam_and_byol_match_float64_references_and_stop_the_target_gradient():
    p1, p2, z1, z2 = _views(3)
    a = [np.asarray(v, np.float64) for v in (p1, p2, z1, z2)]
    np.testing.assert_allclose(
        objectives.simsiam(p1, p2, z1, z2), -0.5 * (_np_cos(a[0], a[3]).mean() + _np_cos(a[1], a[2]).mean()), rtol=1e-5
    )
    # BYOL's normalised MSE ||p/|p| - t/|t|||^2 computed as a squared distance, not through the cosine.
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    mse = lambda p, t: np.mean(np.sum((unit(p) - unit(t)) ** 2, axis=1))  # noqa: E731
    np.testing.assert_allclose(objectives.byol(p1, p2, z1, z2), mse(a[0], a[3]) + mse(a[1], a[2]), rtol=1e-5)
    for loss in (objectives.simsiam, objectives.byol):
        grads = jax.grad(lambda *v, loss=loss: loss(*v), argnums=(0, 1, 2, 3))(p1, p2, z1, z2)
        assert all(np.abs(np.asarray(g)).sum() > 0 for g in grads[:2])
        for g in grads[2:]:
            np.testing.assert_array_equal(g, 0.0)
    # Perfect predictions of the other view: SimSiam -1, BYOL 0.
    np.testing.assert_allclose(objectives.simsiam(z2, z1, z1, z2), -1.0, rtol=1e-6)
    np.testing.assert_allclose(objectives.byol(3 * z2, z1, z1, z2), 0.0, atol=1e-6)


def test_spectral_contrastive_matches_float64_reference():
    z1, z2 = (np.asarray(v, np.float64) for v in _views(4, n=12, dim=6, count=2))
    pos = np.mean([z1[n] @ z2[n] for n in range(12)])
    neg = np.mean([(z1[n] @ z2[k]) ** 2 for n in range(12) for k in range(12) if k != n])
    loss, logits = objectives.spectral_contrastive(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32))
    np.testing.assert_allclose(loss, -2 * pos + neg, rtol=1e-5)
    assert logits.shape == (12, 12)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_vicreg_matches_float64_reference(coeffs):
    # scale 0.5: some dimensions' std below 1, so the hinge is active for some and not others
    z1, z2 = (0.5 * np.asarray(v, np.float64) * np.linspace(0.5, 3, 8) for v in _views(5, n=32, count=2))

    def np_terms(z):
        n, dim = z.shape
        std = np.sqrt(np.var(z, axis=0, ddof=1) + 1e-4)
        cov = np.cov(z, rowvar=False)  # (n - 1) normalisation
        off = sum(cov[i, j] ** 2 for i in range(dim) for j in range(dim) if i != j)
        return np.mean(np.maximum(0, 1 - std)), off / dim

    (s1, c1), (s2, c2) = np_terms(z1), np_terms(z2)
    inv = np.mean((z1 - z2) ** 2)
    ref = coeffs[0] * inv + coeffs[1] * (s1 + s2) / 2 + coeffs[2] * (c1 + c2)
    ours = objectives.vicreg(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), *coeffs)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert s1 > 0 and c1 > 0  # every term is exercised
