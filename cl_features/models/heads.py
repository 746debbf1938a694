"""Heads on an encoder's representation `h: [batch, in_dim]`: the SimCLR projection MLP, a linear classifier,
and a BYOL target copy (`EMATarget` variables: not Params, so the optimiser skips them and checkpoints keep them).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = Any


class ProjectionHead(nnx.Module):
    """(Linear -> BN -> ReLU) x (num_layers - 1) -> Linear: [batch, in_dim] -> [batch, out_dim].

    num_layers >= 1 (2 = SimCLR v1, 3 = v2). With `use_bn` the hidden Linears have no bias (as in SimCLR); BN is
    built in train mode.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        *,
        use_bn: bool = True,
        bn_momentum: float = 0.9,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        self.use_bn = use_bn
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # every hidden Linear, then every BN: the order of their parameter draws
        self.hidden = nnx.List([nnx.Linear(d_in, hidden_dim, use_bias=not use_bn, **kw) for d_in in dims[:-1]])
        bn = functools.partial(nnx.BatchNorm, use_running_average=False, momentum=bn_momentum, epsilon=1e-5, **kw)
        self.norms = nnx.List([bn(hidden_dim) for _ in dims[:-1]] if use_bn else [])
        self.out = nnx.Linear(dims[-1], out_dim, **kw)

    def __call__(self, h: jax.Array) -> jax.Array:
        """h: [batch, in_dim] -> z: [batch, out_dim]."""
        for i, linear in enumerate(self.hidden):
            h = linear(h)
            if self.use_bn:
                h = self.norms[i](h)
            h = nnx.relu(h)
        return self.out(h)


class LinearClassifier(nnx.Module):
    """logits = h @ W + b: [batch, in_dim] -> [batch, num_classes]; `zero_init` starts W at 0 (seed-free probe)."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        zero_init: bool = True,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        kernel_init = nnx.initializers.zeros_init() if zero_init else nnx.initializers.lecun_normal()
        self.linear = nnx.Linear(
            in_dim, num_classes, kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, h: jax.Array) -> jax.Array:
        """h: [batch, in_dim] -> logits: [batch, num_classes]."""
        return self.linear(h)


class EMATarget(nnx.Variable):
    """A target network's copy of an online parameter: moved by `ema_update`, never by the optimiser."""


def ema_copy(module: nnx.Module) -> nnx.Module:
    """A copy of `module` (same structure, its own buffers) with every nnx.Param turned into an EMATarget."""
    target = nnx.clone(module)
    for _, sub in nnx.iter_modules(target):
        for name, v in list(vars(sub).items()):
            if isinstance(v, nnx.Param):
                setattr(sub, name, EMATarget(jnp.copy(v[...])))
    return target


def ema_update(target: nnx.Module, online: nnx.Module, momentum) -> nnx.Module:
    """target <- momentum * target + (1 - momentum) * stop_gradient(online), parameter by parameter; returns it."""
    leaves, treedef = jax.tree.flatten(nnx.state(target, EMATarget))
    online_leaves = jax.tree.leaves(nnx.state(online, nnx.Param))  # the same paths, in the same order
    sg = jax.lax.stop_gradient
    new = [momentum * t + (1 - momentum) * sg(o) for t, o in zip(leaves, online_leaves, strict=True)]
    new = jax.tree.unflatten(treedef, new)
    nnx.update(target, new)
    return target
