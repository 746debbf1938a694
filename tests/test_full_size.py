"""What only full CIFAR-10 exercises, at its real shapes with cheap stand-in data: a 50,000-image kNN bank against
10,000 test features, the logistic probe on 50,000 rows, t-SNE of 10,000 points and bootstrap resamples of 10,000
image pairs. Stand-ins are separable class clusters, so the expected scores are known."""

import numpy as np

from cl_features.measure import bootstrap, knn, linear_probe, tsne

N_TRAIN, N_TEST, CLASSES = 50_000, 10_000, 10


def _clusters(rng, n, dim, spread):
    y = rng.integers(0, CLASSES, n)
    centres = np.random.default_rng(123).standard_normal((CLASSES, dim))
    return (centres[y] + spread * rng.standard_normal((n, dim))).astype(np.float32), y


def test_knn_bank_and_probe_at_full_cifar10_size():
    rng = np.random.default_rng(0)
    bank, bank_y = _clusters(rng, N_TRAIN, 32, 0.4)
    test, test_y = _clusters(rng, N_TEST, 32, 0.4)
    pred = knn.knn_predict(bank, bank_y, test, CLASSES, k=200, temperature=0.1)
    assert pred.shape == (N_TEST,) and np.mean(pred == test_y) > 0.99
    # the first queries against a float64 reference of the weighted vote
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = test[:50] / np.linalg.norm(test[:50], axis=1, keepdims=True)
    sim = q.astype(np.float64) @ b.T.astype(np.float64)
    top = np.argsort(-sim, axis=1)[:, :200]
    votes = np.zeros((50, CLASSES))
    for i in range(50):
        np.add.at(votes[i], bank_y[top[i]], np.exp(sim[i, top[i]] / 0.1))
    assert np.mean(votes.argmax(1) == pred[:50]) >= 0.98
    res = linear_probe.linear_probe(bank, bank_y, test, test_y, CLASSES, l2=[1e-4], max_iter=30)
    assert res["accuracy"] > 0.99


def test_tsne_of_ten_thousand_points_and_full_size_bootstrap():
    rng = np.random.default_rng(1)
    x, y = _clusters(rng, N_TEST, 16, 0.3)
    m = tsne.embed(x, max_iter=250)
    assert m.shape == (N_TEST, 2) and np.isfinite(m).all() and tsne.separation(m, y) > 0.5
    counts = bootstrap.resample_counts(N_TEST, 1000, seed=0)
    a = rng.standard_normal((N_TEST, 8))
    b = 0.6 * a + 0.8 * rng.standard_normal((N_TEST, 8))
    lo, hi = bootstrap.interval(bootstrap.correlation_replicates(a, b, counts))
    assert lo < 0.6 < hi and hi - lo < 0.05
