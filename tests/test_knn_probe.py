"""kNN monitor and offline linear probe against float64 NumPy / scikit-learn references."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cl_features.measure import knn, linear_probe


def _clusters(seed, n, dim=12, classes=4, spread=1.5, means_seed=None):
    """Gaussian clusters around random class means: x [n, dim] float32, y [n] int.

    The means come from `means_seed` (default: `seed`), the samples from `seed`.
    """
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(seed if means_seed is None else means_seed).normal(size=(classes, dim)) * spread
    y = rng.integers(0, classes, n)
    return (means[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def knn_reference(train_x, train_y, test_x, classes, k, temperature):
    """Float64 weighted vote: top-k cosine neighbours, weight exp(sim / T)."""
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    q = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sim = q.astype(np.float64) @ a.T.astype(np.float64)
    preds = []
    for row in sim:
        top = np.argsort(-row)[:k]
        votes = np.zeros(classes)
        np.add.at(votes, train_y[top], np.exp(row[top] / temperature))
        preds.append(np.argmax(votes))
    return np.asarray(preds)


@pytest.mark.parametrize("k,temperature,chunk", [(200, 0.1, 64), (5, 0.5, 7), (1, 0.1, 1000)])
def test_knn_matches_float64_reference(k, temperature, chunk):
    train_x, train_y = _clusters(0, 300, spread=0.6)  # overlapping clusters: votes matter
    test_x, _ = _clusters(1, 101, spread=0.6)
    got = knn.knn_predict(train_x, train_y, test_x, 4, k=k, temperature=temperature, chunk=chunk)
    want = knn_reference(train_x, train_y, test_x, 4, k, temperature)
    assert got.shape == (101,)
    np.testing.assert_array_equal(got, want)


def test_knn_weighting_and_k_larger_than_bank():
    # One query at angle 0; class 0 has one neighbour at cos 0.99, class 1 two at cos 0.8.
    # T = 0.1: exp(9.9) = 19930 > 2 exp(8) = 5962 -> class 0. T = 1: e^0.99 = 2.69 < 2 e^0.8 = 4.45 -> class 1.
    angles = np.arccos([0.99, 0.8, 0.8])
    bank = np.stack([np.cos(angles), np.sin(angles) * np.array([1, 1, -1])], axis=1)
    labels = np.array([0, 1, 1])
    query = np.array([[2.0, 0.0]])
    assert knn.knn_predict(bank, labels, query, 2, k=200, temperature=0.1)[0] == 0
    assert knn.knn_predict(bank, labels, query, 2, k=200, temperature=1.0)[0] == 1
    assert knn.knn_predict(bank, labels, query, 2, k=1, temperature=1.0)[0] == 0
    assert knn.knn_accuracy(bank, labels, query, [0], 2, k=3, temperature=0.1) == 1.0


def test_knn_rejects_bad_arguments():
    x, y = _clusters(0, 10)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        knn.knn_predict(x, y, x, 4, k=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        knn.knn_predict(x, y, x, 4, temperature=0.0)
    with pytest.raises(ValueError, match="features must be"):
        knn.knn_predict(x, y, x[:, :3], 4)
    with pytest.raises(ValueError, match="train_labels"):
        knn.knn_predict(x, y[:5], x, 4)


def test_logistic_probe_matches_sklearn():
    x, y = _clusters(2, 400, dim=8, classes=3, spread=0.5)
    l2 = 1e-2
    probe = linear_probe.fit_logistic(x, y, 3, l2, max_iter=1000, tol=1e-6)
    xs = (x.astype(np.float64) - probe.mean) / probe.std
    ref = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=10000).fit(xs, y)
    # Same convex objective; sklearn's multinomial weights are identified up to a per-feature shift
    # across classes, fixed by the penalty, so the coefficients agree as well as the probabilities.
    np.testing.assert_allclose(probe.w, ref.coef_.T, atol=2e-4)
    np.testing.assert_allclose(probe.b - probe.b.mean(), ref.intercept_ - ref.intercept_.mean(), atol=2e-4)
    np.testing.assert_allclose(_softmax(probe(x)), ref.predict_proba(xs), atol=1e-4)


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_ridge_probe_matches_lstsq():
    x, y = _clusters(3, 200, dim=6, classes=3)
    l2 = 0.05
    probe = linear_probe.fit_ridge(x, y, 3, l2)
    x64 = x.astype(np.float64)
    xs = (x64 - x64.mean(0)) / (x64.std(0) + 1e-6)
    # Augmented least squares: rows [xs, 1] with targets one-hot, plus sqrt(n l2) I rows penalising w only.
    n = len(y)
    a = np.concatenate(
        [np.concatenate([xs, np.ones((n, 1))], 1), np.concatenate([np.sqrt(n * l2) * np.eye(6), np.zeros((6, 1))], 1)]
    )
    t = np.concatenate([np.eye(3)[y], np.zeros((6, 3))])
    coef = np.linalg.lstsq(a, t, rcond=None)[0]
    np.testing.assert_allclose(probe.w, coef[:6], atol=1e-10)
    np.testing.assert_allclose(probe.b, coef[6], atol=1e-10)


def test_probe_chooses_l2_on_held_out_split():
    train_x, train_y = _clusters(4, 300, dim=20, classes=4, spread=0.8)
    test_x, test_y = _clusters(5, 200, dim=20, classes=4, spread=0.8, means_seed=4)  # same means, new draws
    out = linear_probe.linear_probe(train_x, train_y, test_x, test_y, 4, l2=[1e-4, 1e3], method="logistic")
    assert set(out["val_accuracy"]) == {1e-4, 1e3}
    assert out["l2"] == 1e-4  # a huge penalty predicts (nearly) one class
    assert out["val_accuracy"][1e-4] > out["val_accuracy"][1e3]
    assert out["accuracy"] > 0.9 and out["train_accuracy"] > 0.9
    mean, std = train_x.mean(0, dtype=np.float64), train_x.std(0, dtype=np.float64) + 1e-6
    ref = LogisticRegression(C=1.0 / (300 * 1e-4), tol=1e-10, max_iter=10000).fit((train_x - mean) / std, train_y)
    ref_accuracy = np.mean(ref.predict((test_x - mean) / std) == test_y)
    assert abs(out["accuracy"] - ref_accuracy) <= 1 / 200  # at most one borderline point differs
    ridge = linear_probe.linear_probe(train_x, train_y, test_x, test_y, 4, l2=1e-3, method="ridge")
    assert ridge["val_accuracy"] == {} and ridge["accuracy"] > 0.9


def test_probe_rejects_bad_arguments():
    x, y = _clusters(0, 20)
    with pytest.raises(ValueError, match="probe.method must be one of"):
        linear_probe.linear_probe(x, y, x, y, 4, method="svm")
    with pytest.raises(ValueError, match="probe.l2"):
        linear_probe.linear_probe(x, y, x, y, 4, l2=[])
    with pytest.raises(ValueError, match="probe.val_fraction"):
        linear_probe.linear_probe(x, y, x, y, 4, l2=[1e-3, 1e-2], val_fraction=0.0)
