"""Augmentations of sparse-coding vectors (docs/theory.md, section 4), applied to the parts of x = Mz + xi.

Each augmentation maps one example's parts (sparse = Mz: [d1], dense = xi: [d1]) to two views, each split into
its sparse and dense part, so that view = sparse_part + dense_part and the decoupling measurement can look at
the parts separately. Every augmentation here is a per-coordinate random scaling plus additive noise:

    view_k = s_k * x + e_k            (s_k, e_k random; k = 1, 2)

so its effect on the cross-view correlation of <w, view> is fixed by a few moments (`Moments`):
mean of s (mu), E[s_1i^2] (k11), E[s_1i s_2i] (k12) and the variance of e (noise_var). These give the analytic
decoupling prediction in `cl_features.measure.neuron_correlation`.

Names: complementary_mask (the paper's: x+ = 2Dx, x++ = 2(I-D)x), independent_mask (keep prob q, rescaled by
1/q), gaussian_noise (x + N(0, s^2)), none (x+ = x++ = x), dense_mask (oracle: complementary masks on the dense
part only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from cl_features import prng
from cl_features.data.sparse_coding import fair_words, unpack_bits

AUGMENTATIONS = ("complementary_mask", "independent_mask", "gaussian_noise", "none", "dense_mask")


class Views(NamedTuple):
    """Two views of a batch, split into parts: view_k = sparse_k + dense_k, each [batch, d1]."""

    sparse1: jax.Array
    dense1: jax.Array
    sparse2: jax.Array
    dense2: jax.Array

    @property
    def view1(self) -> jax.Array:
        return self.sparse1 + self.dense1

    @property
    def view2(self) -> jax.Array:
        return self.sparse2 + self.dense2


@dataclasses.dataclass(frozen=True)
class Moments:
    """Per-coordinate moments of view_k = s_k * x + e_k (coordinates independent)."""

    mu: float = 1.0  # E[s_ki]
    k11: float = 1.0  # E[s_ki^2]
    k12: float = 1.0  # E[s_1i s_2i]
    noise_var: float = 0.0  # Var[e_ki] per coordinate


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Parameters of the vector augmentations (config: `augment.*`)."""

    keep_prob: float = 0.5  # independent_mask: P(keep a coordinate), views rescaled by 1/keep_prob
    noise_std: float = 1.0  # gaussian_noise: std of the added noise, in units of data.sigma
    sigma: float = 1.0  # data.sigma (the noise std above is noise_std * sigma)


# Each augmentation is a pair: draw(key, d1, params) -> its random numbers for one example, and
# apply(draws, sparse, dense, params) -> ((sparse1, dense1), (sparse2, dense2)), elementwise with broadcasting, so it
# runs on a whole batch of draws. Keeping the two apart lets a train step draw the next batch's numbers ahead
# (`make_sample_fn` in cl_features.synthetic.task).


def _draw_mask(key, d1, params):
    return fair_words(key, d1)  # packed: a drawn-ahead batch carries 1/32 of the floats


def _apply_complementary(words, sparse, dense, params):
    mask = unpack_bits(words, sparse.shape[-1])
    s1, s2 = 2.0 * mask, 2.0 * (1.0 - mask)
    return (s1 * sparse, s1 * dense), (s2 * sparse, s2 * dense)


def _draw_independent(key, d1, params):
    k1, k2 = prng.split(key)
    q = params.keep_prob
    return (prng.bernoulli(k1, q, (d1,)).astype(jnp.float32), prng.bernoulli(k2, q, (d1,)).astype(jnp.float32))


def _apply_independent(masks, sparse, dense, params):
    s1, s2 = masks[0] / params.keep_prob, masks[1] / params.keep_prob
    return (s1 * sparse, s1 * dense), (s2 * sparse, s2 * dense)


def _draw_gaussian(key, d1, params):
    k1, k2 = prng.split(key)
    return prng.normal(k1, (d1,)), prng.normal(k2, (d1,))


def _apply_gaussian(noise, sparse, dense, params):
    std = params.noise_std * params.sigma
    return (sparse, dense + std * noise[0]), (sparse, dense + std * noise[1])


def _draw_nothing(key, d1, params):
    return ()


def _apply_identity(draws, sparse, dense, params):
    return (sparse, dense), (sparse, dense)


def _apply_dense_mask(words, sparse, dense, params):
    mask = unpack_bits(words, dense.shape[-1])
    return (sparse, 2.0 * mask * dense), (sparse, 2.0 * (1.0 - mask) * dense)


_FNS: dict[str, tuple[Callable, Callable]] = {
    "complementary_mask": (_draw_mask, _apply_complementary),
    "independent_mask": (_draw_independent, _apply_independent),
    "gaussian_noise": (_draw_gaussian, _apply_gaussian),
    "none": (_draw_nothing, _apply_identity),
    "dense_mask": (_draw_mask, _apply_dense_mask),
}


def check_name(name: str, field: str = "augmentation") -> str:
    if name not in _FNS:
        raise ValueError(f"{field} must be one of {AUGMENTATIONS}, got {name!r}")
    return name


def draw(name: str, keys: jax.Array, d1: int, params: AugmentParams = AugmentParams()):
    """The augmentation's random numbers for a batch: a pytree of [batch, ...] arrays (keys: [batch])."""
    fn = _FNS[check_name(name)][0]
    return jax.vmap(lambda k: fn(k, d1, params))(keys)


def apply(name: str, draws, sparse: jax.Array, dense: jax.Array, params: AugmentParams = AugmentParams()) -> Views:
    """Two views of a batch from `draw`'s numbers. sparse, dense: [batch, d1]."""
    (a1, b1), (a2, b2) = _FNS[check_name(name)][1](draws, sparse, dense, params)
    return Views(a1, b1, a2, b2)


def augment_parts(
    name: str, keys: jax.Array, sparse: jax.Array, dense: jax.Array, params: AugmentParams = AugmentParams()
) -> Views:
    """Two views of a batch. keys: [batch] (one per example); sparse, dense: [batch, d1]."""
    return apply(name, draw(name, keys, sparse.shape[-1], params), sparse, dense, params)


def moments(name: str, params: AugmentParams = AugmentParams()) -> dict[str, Moments]:
    """Moments of the scaling/noise applied to the sparse and the dense part ({'sparse', 'dense'})."""
    check_name(name)
    ident = Moments()
    if name == "complementary_mask":
        m = Moments(mu=1.0, k11=2.0, k12=0.0)
        return {"sparse": m, "dense": m}
    if name == "independent_mask":
        m = Moments(mu=1.0, k11=1.0 / params.keep_prob, k12=1.0)
        return {"sparse": m, "dense": m}
    if name == "gaussian_noise":
        return {"sparse": ident, "dense": Moments(noise_var=(params.noise_std * params.sigma) ** 2)}
    if name == "dense_mask":
        return {"sparse": ident, "dense": Moments(mu=1.0, k11=2.0, k12=0.0)}
    return {"sparse": ident, "dense": ident}
