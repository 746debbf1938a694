"""Image encoders in Flax NNX: ResNet-18/34/50 (v1.5) and the Wide-ResNet of Zagoruyko & Komodakis.

Every encoder maps `x: [batch, height, width, channels]` (float) to the average-pooled `[batch, feat_dim]`;
`return_intermediates=True` also returns `name -> activation [batch, h, w, c]` for the stem and each stage.
Conventions of torchvision / kuangliu's CIFAR ResNet (parameter counts match): bias-free convs, Kaiming-normal
fan_out kernels, symmetric k // 2 padding; v1.5 Bottleneck strides on its 3x3; 1x1 conv + BN projection shortcuts
where the shape changes; stems 'cifar' (3x3 stride 1) or 'imagenet' (7x7 stride 2 + 3x3 max-pool stride 2).
BatchNorm is built in train mode (`model.train()` / `model.eval()` switch); under jit with a sharded batch its
statistics are the global ones. `dtype` is the compute dtype, `param_dtype` the storage dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = Any

# torch.nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu'): untruncated N(0, 2 / fan_out).
kaiming_normal_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


@dataclasses.dataclass(frozen=True)
class _Layers:
    """Makes the conv and BN layers of one encoder with shared dtype / BN settings."""

    dtype: Dtype
    param_dtype: Dtype
    bn_momentum: float
    bn_epsilon: float

    def conv(self, c_in: int, c_out: int, k: int, stride: int, *, rngs: nnx.Rngs) -> nnx.Conv:
        pad = k // 2
        return nnx.Conv(
            c_in,
            c_out,
            (k, k),
            strides=stride,
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=kaiming_normal_fan_out,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            rngs=rngs,
        )

    def bn(self, c: int, *, rngs: nnx.Rngs, zero_scale: bool = False) -> nnx.BatchNorm:
        scale_init = nnx.initializers.zeros_init() if zero_scale else nnx.initializers.ones_init()
        return nnx.BatchNorm(
            c,
            use_running_average=False,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            scale_init=scale_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            rngs=rngs,
        )


def _check_images(x: jax.Array, in_channels: int) -> None:
    if x.ndim != 4 or x.shape[-1] != in_channels:
        raise ValueError(f"x must be images [batch, height, width, {in_channels}], got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array (convert uint8 images first), got dtype {x.dtype}")


class _Projection(nnx.Module):
    """1x1 conv (stride) + BN shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, layers: _Layers, rngs: nnx.Rngs):
        self.conv = layers.conv(c_in, c_out, 1, stride, rngs=rngs)
        self.bn = layers.bn(c_out, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(x))


def _shortcut(c_in: int, c_out: int, stride: int, *, layers: _Layers, rngs: nnx.Rngs) -> _Projection | None:
    """A block's projection where it changes the stride or the channels; None: the identity."""
    return _Projection(c_in, c_out, stride, layers=layers, rngs=rngs) if stride != 1 or c_in != c_out else None


class BasicBlock(nnx.Module):
    """Two 3x3 convs (stride on the first) + shortcut, then ReLU. out_channels = width."""

    expansion = 1

    def __init__(
        self, c_in: int, width: int, stride: int, *, layers: _Layers, zero_init_residual: bool = False, rngs: nnx.Rngs
    ):
        self.out_channels = width * self.expansion
        self.conv1 = layers.conv(c_in, width, 3, stride, rngs=rngs)
        self.bn1 = layers.bn(width, rngs=rngs)
        self.conv2 = layers.conv(width, width, 3, 1, rngs=rngs)
        self.bn2 = layers.bn(width, rngs=rngs, zero_scale=zero_init_residual)
        self.shortcut = _shortcut(c_in, self.out_channels, stride, layers=layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 (stride, v1.5) -> 1x1 (x4 channels) + shortcut, then ReLU. out_channels = 4 * width."""

    expansion = 4

    def __init__(
        self, c_in: int, width: int, stride: int, *, layers: _Layers, zero_init_residual: bool = False, rngs: nnx.Rngs
    ):
        self.out_channels = width * self.expansion
        self.conv1 = layers.conv(c_in, width, 1, 1, rngs=rngs)
        self.bn1 = layers.bn(width, rngs=rngs)
        self.conv2 = layers.conv(width, width, 3, stride, rngs=rngs)
        self.bn2 = layers.bn(width, rngs=rngs)
        self.conv3 = layers.conv(width, self.out_channels, 1, 1, rngs=rngs)
        self.bn3 = layers.bn(self.out_channels, rngs=rngs, zero_scale=zero_init_residual)
        self.shortcut = _shortcut(c_in, self.out_channels, stride, layers=layers, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


_BLOCK_CLASSES = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nnx.Module):
    """ResNet encoder: stem, stages of residual blocks (widths width * 2**i), global average pool.

    block: 'basic' (ResNet-18/34) or 'bottleneck' (50+); stage_sizes: blocks per stage (stage i > 0 starts with
    stride 2); width: channels of stem and stage 1; zero_init_residual: each block's last BN scale starts at 0.
    Intermediates are post-ReLU ('stem' after the 'imagenet' max-pool).
    """

    def __init__(
        self,
        block: str,
        stage_sizes: Sequence[int],
        *,
        width: int = 64,
        stem: str = "cifar",
        in_channels: int = 3,
        zero_init_residual: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        layers = _Layers(dtype, param_dtype, bn_momentum, bn_epsilon)
        self.stem = stem
        self.in_channels = in_channels
        self.dtype = dtype
        kernel, stride = {"cifar": (3, 1), "imagenet": (7, 2)}[stem]
        self.stem_conv = layers.conv(in_channels, width, kernel, stride, rngs=rngs)
        self.stem_bn = layers.bn(width, rngs=rngs)

        block_cls = _BLOCK_CLASSES[block]
        c_in = width
        make_block = functools.partial(block_cls, layers=layers, zero_init_residual=zero_init_residual, rngs=rngs)
        stages = []
        for i, num_blocks in enumerate(stage_sizes):
            blocks = []
            for j in range(int(num_blocks)):
                blocks.append(make_block(c_in, width * 2**i, 2 if (i > 0 and j == 0) else 1))
                c_in = blocks[-1].out_channels
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.feat_dim = c_in

    def __call__(self, x: jax.Array, *, return_intermediates: bool = False):
        _check_images(x, self.in_channels)
        x = jnp.asarray(x, self.dtype)
        h = nnx.relu(self.stem_bn(self.stem_conv(x)))
        if self.stem == "imagenet":
            h = nnx.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        intermediates = {"stem": h}
        for i, stage in enumerate(self.stages):
            for blk in stage:
                h = blk(h)
            intermediates[f"stage{i + 1}"] = h
        features = jnp.mean(h, axis=(1, 2))
        return (features, intermediates) if return_intermediates else features


class WideBlock(nnx.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-[dropout]-conv3x3 + shortcut (1x1 conv of relu(bn1(x)) where the shape
    changes, else x); no ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, dropout: float, layers: _Layers, rngs: nnx.Rngs):
        self.bn1 = layers.bn(c_in, rngs=rngs)
        self.conv1 = layers.conv(c_in, c_out, 3, stride, rngs=rngs)
        self.bn2 = layers.bn(c_out, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout > 0 else None
        self.conv2 = layers.conv(c_out, c_out, 3, 1, rngs=rngs)
        needs_projection = stride != 1 or c_in != c_out
        self.shortcut = layers.conv(c_in, c_out, 1, stride, rngs=rngs) if needs_projection else None

    def __call__(self, x: jax.Array, *, dropout_key: jax.Array | None = None) -> jax.Array:
        o = nnx.relu(self.bn1(x))
        y = nnx.relu(self.bn2(self.conv1(o)))
        if self.dropout is not None:
            y = self.dropout(y, rngs=dropout_key)
        y = self.conv2(y)
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nnx.Module):
    """Wide-ResNet WRN-depth-widen, pre-activation, CIFAR layout: depth = 6n + 4, feat_dim = 64 * widen.

    3x3 stem (16 channels), three groups of n `WideBlock`s (widths 16k, 32k, 64k; strides 1, 2, 2), BN + ReLU,
    average pool. Intermediates: 'stem', 'stage1'..'stage3' (residual sums, pre-activation) and 'final' (post
    BN-ReLU). Dropout (train mode only) draws from `dropout_key` folded in per block, else the model's RNG stream.
    """

    def __init__(
        self,
        depth: int = 34,
        widen: int = 5,
        *,
        dropout: float = 0.0,
        in_channels: int = 3,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        rngs: nnx.Rngs,
        dtype: Dtype = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth}")
        layers = _Layers(dtype, param_dtype, bn_momentum, bn_epsilon)
        n = (depth - 4) // 6
        self.in_channels = in_channels
        self.dtype = dtype
        self.stem_conv = layers.conv(in_channels, 16, 3, 1, rngs=rngs)
        c_in = 16
        groups = []
        for c_out, stride in zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2)):
            blocks = []
            for j in range(n):
                blocks.append(WideBlock(c_in, c_out, 1 if j else stride, dropout=dropout, layers=layers, rngs=rngs))
                c_in = c_out
            groups.append(nnx.List(blocks))
        self.stages = nnx.List(groups)
        self.final_bn = layers.bn(c_in, rngs=rngs)
        self.feat_dim = c_in

    def __call__(self, x: jax.Array, *, return_intermediates: bool = False, dropout_key: jax.Array | None = None):
        _check_images(x, self.in_channels)
        x = jnp.asarray(x, self.dtype)
        h = self.stem_conv(x)
        intermediates = {"stem": h}
        block_index = 0
        for i, stage in enumerate(self.stages):
            for blk in stage:
                key = None if dropout_key is None else jax.random.fold_in(dropout_key, block_index)
                h = blk(h, dropout_key=key)
                block_index += 1
            intermediates[f"stage{i + 1}"] = h
        h = nnx.relu(self.final_bn(h))
        intermediates["final"] = h
        features = jnp.mean(h, axis=(1, 2))
        return (features, intermediates) if return_intermediates else features


# name -> (class, arguments). '_imagenet' names use the 7x7 + max-pool stem; wrn34x5 is the paper's CIFAR-10
# encoder (feat_dim 320); resnet18/34 have feat_dim 512, resnet50 (v1.5, Bottleneck) 2048. Test-sized: one
# BasicBlock per stage with widths 8-16-32-64, and WRN-10-1 (both feat_dim 64).
_ENCODERS: dict[str, tuple[type, dict]] = {
    "resnet18": (ResNet, dict(block="basic", stage_sizes=(2, 2, 2, 2))),
    "resnet34": (ResNet, dict(block="basic", stage_sizes=(3, 4, 6, 3))),
    "resnet50": (ResNet, dict(block="bottleneck", stage_sizes=(3, 4, 6, 3))),
    "resnet18_imagenet": (ResNet, dict(block="basic", stage_sizes=(2, 2, 2, 2), stem="imagenet")),
    "resnet50_imagenet": (ResNet, dict(block="bottleneck", stage_sizes=(3, 4, 6, 3), stem="imagenet")),
    "wrn34x5": (WideResNet, dict(depth=34, widen=5)),
    "resnet_tiny": (ResNet, dict(block="basic", stage_sizes=(1, 1, 1, 1), width=8)),
    "wrn_tiny": (WideResNet, dict(depth=10, widen=1)),
}
ENCODER_NAMES = tuple(_ENCODERS)


def build_encoder(
    name: str, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32
) -> ResNet | WideResNet:
    """Encoder by name (one of ENCODER_NAMES)."""
    if name not in _ENCODERS:
        raise ValueError(f"encoder name must be one of {list(ENCODER_NAMES)}, got {name!r}")
    cls, kwargs = _ENCODERS[name]
    return cls(**kwargs, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
