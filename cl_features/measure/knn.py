"""Weighted k-nearest-neighbour classification on frozen features (Wu et al. 2018; the InstDisc / SimCLR monitor).

On L2-normalised features, the k train features of largest cosine similarity s_i vote for their labels with weight
exp(s_i / temperature); jitted in chunks of queries, so memory is [chunk, num_train].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _check(
    train_features, train_labels, test_features, num_classes: int, k: int, temperature: float, chunk: int
) -> None:
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"features must be [n, dim] with one dim, got train {tuple(train_features.shape)}, "
            f"test {tuple(test_features.shape)}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(f"train_labels must be [{train_features.shape[0]}], got {tuple(train_labels.shape)}")
    if train_features.shape[0] < 1:
        raise ValueError("train_features must hold at least one example")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")


def _normalise(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("num_classes", "k", "chunk"))
def _predict(train_features, train_labels, test_features, temperature, *, num_classes: int, k: int, chunk: int):
    bank = _normalise(train_features)  # [n_train, dim]
    queries = _normalise(test_features)  # [n_test_padded, dim]
    queries = queries.reshape(-1, chunk, queries.shape[1])  # [chunks, chunk, dim]

    def one_chunk(q):  # q: [chunk, dim] -> (predictions [chunk], votes [chunk, classes])
        sim = jnp.matmul(q, bank.T, precision=jax.lax.Precision.HIGHEST)  # [chunk, n_train]
        top_sim, top_idx = jax.lax.top_k(sim, k)  # [chunk, k]
        weights = jnp.exp(top_sim / temperature)
        votes = jnp.sum(jax.nn.one_hot(train_labels[top_idx], num_classes) * weights[..., None], axis=1)
        return jnp.argmax(votes, axis=1), votes

    preds, votes = jax.lax.map(one_chunk, queries)
    return preds.reshape(-1), votes.reshape(-1, num_classes)


def knn_predict(
    train_features,
    train_labels,
    test_features,
    num_classes: int,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 256,
) -> np.ndarray:
    """Predicted labels int [n_test] for test_features: [n_test, dim] from a bank train_features: [n_train, dim].

    train_labels: int [n_train] in [0, num_classes). k larger than n_train uses all n_train neighbours.
    """
    train_features, test_features = jnp.asarray(train_features), jnp.asarray(test_features)
    train_labels = jnp.asarray(train_labels, jnp.int32)
    _check(train_features, train_labels, test_features, num_classes, k, temperature, chunk)
    n_test = test_features.shape[0]
    if n_test == 0:
        return np.zeros((0,), np.int32)
    chunk = min(chunk, n_test)
    padded = -(-n_test // chunk) * chunk
    test_features = jnp.pad(test_features, ((0, padded - n_test), (0, 0)))
    static = dict(num_classes=int(num_classes), k=int(min(k, train_features.shape[0])), chunk=int(chunk))
    preds, _ = _predict(train_features, train_labels, test_features, jnp.float32(temperature), **static)
    return np.asarray(preds[:n_test])


def knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes: int, **kwargs) -> float:
    """Fraction of test examples whose weighted-kNN vote is their label (kwargs: `knn_predict`'s k, temperature,
    chunk)."""
    preds = knn_predict(train_features, train_labels, test_features, num_classes, **kwargs)
    test_labels = np.asarray(test_labels)
    if test_labels.shape != preds.shape:
        raise ValueError(f"test_labels must be [{preds.shape[0]}], got {test_labels.shape}")
    return float(np.mean(preds == test_labels)) if preds.size else float("nan")
