"""Linear probes on frozen features: ridge regression to +-1 labels (float64, closed form)."""

from __future__ import annotations

import numpy as np


def _design(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    x = (x - mean) / std
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def ridge_binary_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, l2: float = 1e-3
) -> np.ndarray:
    """Accuracy per task of sign(ridge fit). x: [n, p]; y: [n, tasks] in {-1, 0, +1} (0 = no label, skipped).

    Features are standardised on the train split; l2 is relative to the number of train examples.
    Returns [tasks] accuracies.
    """
    train_x = np.asarray(train_x, np.float64)
    test_x = np.asarray(test_x, np.float64)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    a, b = _design(train_x, mean, std), _design(test_x, mean, std)
    gram = a.T @ a + l2 * a.shape[0] * np.eye(a.shape[1])
    accs = []
    for t in range(train_y.shape[1]):
        keep_tr, keep_te = train_y[:, t] != 0, test_y[:, t] != 0
        coef = np.linalg.solve(gram - a[~keep_tr].T @ a[~keep_tr], a[keep_tr].T @ train_y[keep_tr, t])
        pred = np.sign(b[keep_te] @ coef)
        accs.append(np.mean(pred == test_y[keep_te, t]))
    return np.asarray(accs)
