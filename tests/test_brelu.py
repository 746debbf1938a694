import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cl_features.models import brelu


def test_bias_schedule_values_and_ramp():
    np.testing.assert_allclose(brelu.bias_scale(0, c=2.0, sigma=0.5, ramp_steps=0), 1.0)
    np.testing.assert_allclose(brelu.bias_scale(0, c=2.0, sigma=0.5, ramp_steps=100), 0.0)
    np.testing.assert_allclose(brelu.bias_scale(25, c=2.0, sigma=0.5, ramp_steps=100), 0.25)
    np.testing.assert_allclose(brelu.bias_scale(500, c=2.0, sigma=0.5, ramp_steps=100), 1.0)


def test_symmetric_thresholded_relu_formula():
    model = brelu.SymmetricReLUNet(5, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (7, 5))
    w = np.asarray(model.w[...], np.float64)
    b = 0.8 * np.linalg.norm(w, axis=1)
    pre = np.asarray(x, np.float64) @ w.T
    ref = np.maximum(pre - b, 0) - np.maximum(-pre - b, 0)
    np.testing.assert_allclose(model(x, 0.8), ref, rtol=1e-5, atol=1e-6)
    # Odd function, zero inside the threshold band.
    np.testing.assert_allclose(model(-x, 0.8), -ref, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(model(x, 0.8))[np.abs(pre) <= b] == 0)


def test_no_gradient_through_scheduled_bias():
    model = brelu.SymmetricReLUNet(4, 2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (16, 4))
    w0 = model.w[...]
    b_fixed = 0.5 * jnp.linalg.norm(w0, axis=1)

    graphdef, state = nnx.split(model)

    def with_schedule(w):
        new = jax.tree_util.tree_map(lambda _: w, state)  # the only leaf is w
        return jnp.sum(nnx.merge(graphdef, new)(x, 0.5) ** 2)

    def with_constant(w):
        return jnp.sum(brelu.activate(x @ w.T, b_fixed) ** 2)

    np.testing.assert_allclose(jax.grad(with_schedule)(w0), jax.grad(with_constant)(w0), rtol=1e-5)


def test_learned_bias_and_relu_variants():
    model = brelu.SymmetricReLUNet(4, 3, rngs=nnx.Rngs(0), bias="learned", bias_scale_init=1.0, activation="relu")
    np.testing.assert_allclose(model.b[...], jnp.linalg.norm(model.w[...], axis=1), rtol=1e-6)
    assert len(jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))) == 2
    x = jax.random.normal(jax.random.key(3), (5, 4))
    pre = x @ model.w[...].T
    np.testing.assert_allclose(model(x), np.maximum(pre - model.b[...], 0), rtol=1e-6)
    none = brelu.SymmetricReLUNet(4, 3, rngs=nnx.Rngs(0), bias="none")
    np.testing.assert_allclose(none(x, 5.0), x @ none.w[...].T, rtol=1e-6)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="model.activation"):
        brelu.SymmetricReLUNet(4, 3, rngs=nnx.Rngs(0), activation="gelu")
    with pytest.raises(ValueError, match="model.bias"):
        brelu.SymmetricReLUNet(4, 3, rngs=nnx.Rngs(0), bias="adaptive")
