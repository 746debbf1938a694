"""The paper's learner: one hidden layer of symmetric thresholded ReLUs (docs/theory.md section 2).

    f(x) = (h_1(x), ..., h_m(x)),  h_i(x) = ReLU(<w_i, x> - b_i) - ReLU(-<w_i, x> - b_i)

Bias kinds: "schedule" (the paper's: b_i = bias_scale * ||w_i||, no gradient through it, bias_scale from
`bias_scale`), "learned" (a parameter, initialised at bias_scale_init * ||w_i(0)||) or "none" (b_i = 0).
Activations: "symmetric" (the paper's) or "relu" (ReLU(<w_i, x> - b_i), a comparison).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

BIAS_KINDS = ("schedule", "learned", "none")
ACTIVATIONS = ("symmetric", "relu")


def bias_scale(step: jax.Array, *, c: float, sigma: float, ramp_steps: int) -> jax.Array:
    """b_i / ||w_i|| at `step`: c * sigma, ramped linearly from 0 over `ramp_steps` steps (0: no ramp)."""
    if ramp_steps <= 0:
        return jnp.asarray(c * sigma, jnp.float32)
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / ramp_steps, 0.0, 1.0)
    return c * sigma * frac


class SymmetricReLUNet(nnx.Module):
    """m neurons on d1 inputs. Weights `w`: [width, d1] (row i is neuron w_i)."""

    def __init__(
        self,
        d1: int,
        width: int,
        *,
        rngs: nnx.Rngs,
        init_scale: float | None = None,
        activation: str = "symmetric",
        bias: str = "schedule",
        bias_scale_init: float = 0.0,
    ):
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {ACTIVATIONS}, got {activation!r}")
        if bias not in BIAS_KINDS:
            raise ValueError(f"model.bias must be one of {BIAS_KINDS}, got {bias!r}")
        init_scale = 1.0 / d1**0.5 if init_scale is None else init_scale
        self.activation = activation
        self.bias_kind = bias
        self.w = nnx.Param(init_scale * jax.random.normal(rngs.params(), (width, d1), jnp.float32))
        if bias == "learned":
            norms = jnp.linalg.norm(self.w[...], axis=1)
            self.b = nnx.Param(bias_scale_init * norms)

    def thresholds(self, bias_scale: jax.Array | float = 0.0) -> jax.Array:
        """b: [width]."""
        w = self.w[...]
        if self.bias_kind == "schedule":
            return bias_scale * jax.lax.stop_gradient(jnp.linalg.norm(w, axis=1))
        if self.bias_kind == "learned":
            return self.b[...]
        return jnp.zeros((w.shape[0],), w.dtype)

    def __call__(self, x: jax.Array, bias_scale: jax.Array | float = 0.0) -> jax.Array:
        """x: [batch, d1] -> h: [batch, width]."""
        return activate(x @ self.w[...].T, self.thresholds(bias_scale), self.activation)


def activate(pre: jax.Array, b: jax.Array, activation: str = "symmetric") -> jax.Array:
    """pre: [batch, width], b: [width] -> h: [batch, width]."""
    if activation == "symmetric":
        return jax.nn.relu(pre - b) - jax.nn.relu(-pre - b)
    return jax.nn.relu(pre - b)
