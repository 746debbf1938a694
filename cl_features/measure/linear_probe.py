"""Linear probes on frozen features: multinomial logistic regression (L-BFGS) or ridge to one-hot targets, and
ridge probes of +-1 labels per task (`ridge_binary_accuracy`, the synthetic experiment's probe).

Features are standardised on the fitting split; the penalty is on the weights only:
  logistic: mean_n CE(softmax(x_n W + b), y_n) + (l2 / 2) ||W||^2 (sklearn's C = 1 / (n l2)), float32 optax.lbfgs
            until the gradient norm is below `tol` or `max_iter` iterations;
  ridge:    `ridge.fit` to onehot(y), predicted class = argmax.
With several l2 values, a seeded `val_fraction` of the train split chooses the one of best held-out accuracy, then
the probe is refit on the whole train split.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from cl_features.measure import ridge

METHODS = ("logistic", "ridge")
_EPS = 1e-6  # added to the features' std


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter"))
def _lbfgs(x, y, l2, tol, *, num_classes: int, max_iter: int):
    """x: [n, dim] standardised float32, y: [n] int -> (w [dim, classes], b [classes], iterations)."""
    params = (jnp.zeros((x.shape[1], num_classes), jnp.float32), jnp.zeros((num_classes,), jnp.float32))

    def objective(p):
        w, b = p
        logits = jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST) + b
        ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        return ce + 0.5 * l2 * jnp.sum(w * w)

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def step(carry):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(p, updates), state

    def going(carry):
        _, state = carry
        count = otu.tree_get(state, "count")
        return (count == 0) | ((count < max_iter) & (otu.tree_norm(otu.tree_get(state, "grad")) >= tol))

    (w, b), state = jax.lax.while_loop(going, step, (params, opt.init(params)))
    return w, b, otu.tree_get(state, "count")


def fit_logistic(x, y, num_classes: int, l2: float, *, max_iter: int = 500, tol: float = 1e-5) -> ridge.Linear:
    """Multinomial logistic regression on standardised x: [n, dim], y: int [n] (see module docstring) -> logits map."""
    mean, std = ridge.standardiser(x, _EPS)
    xs = jnp.asarray((np.asarray(x, np.float64) - mean) / std, jnp.float32)
    args = (xs, jnp.asarray(y, jnp.int32), jnp.float32(l2), jnp.float32(tol))
    w, b, _ = _lbfgs(*args, num_classes=int(num_classes), max_iter=int(max_iter))
    return ridge.Linear(mean, std, np.asarray(w), np.asarray(b))


def fit_ridge(x, y, num_classes: int, l2: float) -> ridge.Linear:
    """Ridge regression to one-hot targets on standardised x: [n, dim] (`ridge.fit`)."""
    return ridge.fit(x, np.eye(num_classes)[np.asarray(y)], l2, eps=_EPS)


def _check(train_x, train_y, test_x, test_y, num_classes, method, l2s, val_fraction) -> None:
    if method not in METHODS:
        raise ValueError(f"probe.method must be one of {METHODS}, got {method!r}")
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be [n, dim] with one dim, got train {train_x.shape}, test {test_x.shape}")
    if train_y.shape != (train_x.shape[0],) or test_y.shape != (test_x.shape[0],):
        raise ValueError(f"labels must be [n] matching the features, got train {train_y.shape}, test {test_y.shape}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if len(l2s) < 1 or any(not v >= 0 for v in l2s):
        raise ValueError(f"probe.l2 must be a non-empty list of values >= 0, got {l2s!r}")
    if len(l2s) > 1 and not 0 < val_fraction < 1:
        raise ValueError(f"probe.val_fraction must be in (0, 1) to choose among several l2, got {val_fraction!r}")


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    num_classes: int,
    *,
    method: str = "logistic",
    l2: float | Sequence[float] = 1e-4,
    val_fraction: float = 0.1,
    max_iter: int = 500,
    seed: int = 0,
) -> dict:
    """Fits a probe on (train_x [n, dim], train_y [n]) and scores it on (test_x, test_y).

    Returns {'accuracy': test accuracy, 'train_accuracy', 'l2': the value used, 'val_accuracy': {l2: held-out
    accuracy} (empty with a single l2)}.
    """
    train_x, test_x = np.asarray(train_x), np.asarray(test_x)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    l2s = [float(v) for v in (l2 if isinstance(l2, (list, tuple)) else [l2])]
    _check(train_x, train_y, test_x, test_y, num_classes, method, l2s, val_fraction)

    def fit(x, y, value):
        if method == "ridge":
            return fit_ridge(x, y, num_classes, value)
        return fit_logistic(x, y, num_classes, value, max_iter=max_iter)

    def accuracy(probe, x, y):
        return float(np.mean(np.argmax(probe(x), axis=1) == y))

    val_accuracy = {}
    best = l2s[0]
    if len(l2s) > 1:
        order = np.random.default_rng(seed).permutation(len(train_y))
        n_val = max(1, int(round(val_fraction * len(train_y))))
        val, fit_idx = order[:n_val], order[n_val:]
        for value in l2s:
            probe = fit(train_x[fit_idx], train_y[fit_idx], value)
            val_accuracy[value] = accuracy(probe, train_x[val], train_y[val])
        best = max(l2s, key=lambda v: val_accuracy[v])  # first of the best, in the given order
    probe = fit(train_x, train_y, best)
    return {
        "accuracy": accuracy(probe, test_x, test_y),
        "train_accuracy": accuracy(probe, train_x, train_y),
        "l2": best,
        "val_accuracy": val_accuracy,
    }


def ridge_binary_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, l2: float = 1e-3
) -> np.ndarray:
    """Accuracy per task of sign(ridge fit). x: [n, p]; y: [n, tasks] in {-1, 0, +1} (0 = no label, skipped).

    Features are standardised on the train split; the design has a constant column (penalised like the rest);
    l2 is relative to the number of train examples, unlabelled ones included.
    Returns [tasks] accuracies.
    """
    mean, std = ridge.standardiser(train_x, 1e-8)

    def design(x):
        x = (np.asarray(x, np.float64) - mean) / std
        return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)

    a, b = design(train_x), design(test_x)
    accs = []
    for t in range(train_y.shape[1]):
        keep_tr, keep_te = train_y[:, t] != 0, test_y[:, t] != 0
        coef = ridge.solve(a[keep_tr], train_y[keep_tr, t], l2 * a.shape[0])
        accs.append(np.mean(np.sign(b[keep_te] @ coef) == test_y[keep_te, t]))
    return np.asarray(accs)
