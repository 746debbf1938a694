"""Tests for cl_features.models.resnet and cl_features.models.heads.

References: published parameter counts (torchvision, kuangliu/pytorch-cifar, Zagoruyko & Komodakis),
an independent integer formula of the conv/BN shapes, and float64 NumPy convolution / BatchNorm.
Big models are only ever built abstractly (nnx.eval_shape / jax.eval_shape); forward passes use the
tiny models.
"""

import functools
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cl_features.models import resnet as R
from cl_features.models.heads import LinearClassifier, ProjectionHead

MOMENTUM, EPS = 0.9, 1e-5


# ------------------------------------------------------------------------------------------- helpers


def num_params(module) -> int:
    """Trainable parameters only (nnx.Param), not BatchNorm running statistics."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def abstract(fn):
    return nnx.eval_shape(fn)


def abstract_forward(model, x_shape):
    """Shapes/dtypes of model(x, return_intermediates=True) without computing anything."""
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x, return_intermediates=True)

    return jax.eval_shape(forward, state, jax.ShapeDtypeStruct(x_shape, jnp.float32))


def np_conv(x, w, stride, pad):
    """float64 reference: x [B, H, W, Cin], w [k, k, Cin, Cout] (HWIO), symmetric zero padding."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    w = np.asarray(w, np.float64)
    k = w.shape[0]
    h_out = (x.shape[1] - k) // stride + 1
    w_out = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], h_out, w_out, w.shape[-1]))
    for dy in range(k):
        for dx in range(k):
            patch = x[:, dy : dy + stride * h_out : stride, dx : dx + stride * w_out : stride, :]
            out += np.einsum("bhwc,co->bhwo", patch, w[dy, dx])
    return out


def np_max_pool_3x3_s2(x):
    """float64 reference of a 3x3 / stride-2 max-pool with padding 1 (pad = -inf), x [B, H, W, C]."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    h_out, w_out = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    out = np.full((x.shape[0], h_out, w_out, x.shape[3]), -np.inf)
    for dy in range(3):
        for dx in range(3):
            out = np.maximum(out, x[:, dy : dy + 2 * h_out : 2, dx : dx + 2 * w_out : 2, :])
    return out


@nnx.jit
def run(model, x):
    """Jitted model(x, return_intermediates=True): one compile per model shape instead of op-by-op."""
    return model(x, return_intermediates=True)


def features(model, x):
    return run(model, x)[0]


def key(seed):
    """PRNG key of the 'rbg' implementation: the default threefry costs ~1 s of XLA compile per new
    shape on a loaded CPU, rbg ~0.2 s. The models take any key type; nothing here depends on the impl."""
    return jax.random.key(seed, impl="rbg")


def rngs(seed):
    return nnx.Rngs(key(seed))


def images(seed, batch=4, size=16):
    """x: [batch, size, size, 3] standard normal; tests share (4, 16, 16) so jit compiles are reused."""
    return jax.random.normal(key(seed), (batch, size, size, 3), jnp.float32)


TINY = ("resnet_tiny", "wrn_tiny")


@functools.cache
def _pristine(name):
    return R.build_encoder(name, rngs=rngs(0))


def tiny(name):
    """A fresh copy of build_encoder(name, rngs=rngs(0)) (built once, cloned per test)."""
    return nnx.clone(_pristine(name))


# ------------------------------------------------------------------------ independent count formula


def conv_p(k, c_in, c_out):
    return k * k * c_in * c_out


def bn_p(c):
    return 2 * c  # gamma and beta; running mean/var are not parameters


def ref_resnet_params(block, stage_sizes, stem_kernel, width=64):
    total = conv_p(stem_kernel, 3, width) + bn_p(width)
    c_in = width
    for i, n in enumerate(stage_sizes):
        w = width * 2**i
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            if block == "basic":
                c_out = w
                total += conv_p(3, c_in, w) + bn_p(w) + conv_p(3, w, w) + bn_p(w)
            else:
                c_out = 4 * w
                total += conv_p(1, c_in, w) + bn_p(w) + conv_p(3, w, w) + bn_p(w) + conv_p(1, w, c_out) + bn_p(c_out)
            if stride != 1 or c_in != c_out:
                total += conv_p(1, c_in, c_out) + bn_p(c_out)
            c_in = c_out
    return total, c_in


def ref_wrn_params(depth, widen):
    n = (depth - 4) // 6
    total, c_in = conv_p(3, 3, 16), 16
    for group, c_out in enumerate((16 * widen, 32 * widen, 64 * widen)):
        for j in range(n):
            stride = 2 if (group > 0 and j == 0) else 1
            total += bn_p(c_in) + conv_p(3, c_in, c_out) + bn_p(c_out) + conv_p(3, c_out, c_out)
            if stride != 1 or c_in != c_out:
                total += conv_p(1, c_in, c_out)  # 1x1 projection shortcut, no BN of its own
            c_in = c_out
    return total + bn_p(c_in), c_in


def fc_p(d, classes):
    return d * classes + classes


# -------------------------------------------------------------------------------- parameter counts

# (name, published total with its classifier, number of classes, source)
PUBLISHED = [
    ("resnet18", 11_173_962, 10),  # kuangliu/pytorch-cifar ResNet18
    ("resnet34", 21_282_122, 10),  # kuangliu/pytorch-cifar ResNet34
    ("resnet50", 23_520_842, 10),  # kuangliu/pytorch-cifar ResNet50
    ("resnet18_imagenet", 11_689_512, 1000),  # torchvision resnet18
    ("resnet50_imagenet", 25_557_032, 1000),  # torchvision resnet50
]


@pytest.mark.parametrize("name,published,classes", PUBLISHED)
def test_resnet_param_counts_match_published_and_formula(name, published, classes):
    model = abstract(lambda: R.build_encoder(name, rngs=rngs(0)))
    head = abstract(lambda: LinearClassifier(model.feat_dim, classes, rngs=rngs(0)))
    block = "bottleneck" if name.startswith("resnet50") else "basic"
    sizes = (2, 2, 2, 2) if name.startswith("resnet18") else (3, 4, 6, 3)
    ref, feat_dim = ref_resnet_params(block, sizes, 7 if name.endswith("imagenet") else 3)
    assert model.feat_dim == feat_dim
    assert num_params(model) == ref
    assert num_params(model) + num_params(head) == published == ref + fc_p(feat_dim, classes)


def test_wrn34x5_param_count():
    model = abstract(lambda: R.build_encoder("wrn34x5", rngs=rngs(0)))
    ref, feat_dim = ref_wrn_params(34, 5)
    assert (model.feat_dim, feat_dim) == (320, 320)
    assert num_params(model) == ref == 11_550_864  # backbone; + 3,210 with a 10-class fc = 11,554,074


@pytest.mark.parametrize("depth,widen,published_millions", [(28, 10, 36.5), (16, 8, 11.0), (40, 4, 8.9)])
def test_wrn_param_count_formula_reproduces_published_sizes(depth, widen, published_millions):
    # Zagoruyko & Komodakis 2016, Table 4 (CIFAR-10, 10-class fc included).
    model = abstract(lambda: R.WideResNet(depth, widen, rngs=rngs(0)))
    ref, feat_dim = ref_wrn_params(depth, widen)
    assert num_params(model) == ref
    assert round((ref + fc_p(feat_dim, 10)) / 1e6, 1) == published_millions
    if (depth, widen) == (28, 10):
        assert ref + fc_p(feat_dim, 10) == 36_479_194


# -------------------------------------------------------------------------------------- shapes


FEAT_DIMS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet18_imagenet": 512,
    "resnet50_imagenet": 2048,
    "wrn34x5": 320,
    "resnet_tiny": 64,
    "wrn_tiny": 64,
}


def test_factory_names_are_the_documented_ones():
    assert set(R.ENCODER_NAMES) == set(FEAT_DIMS)


@pytest.mark.parametrize("name", sorted(FEAT_DIMS))
def test_output_and_intermediate_shapes_at_32x32(name):
    model = abstract(lambda: R.build_encoder(name, rngs=rngs(0)))
    feats, inter = abstract_forward(model, (2, 32, 32, 3))
    assert model.feat_dim == FEAT_DIMS[name]
    assert feats.shape == (2, FEAT_DIMS[name]) and feats.dtype == jnp.float32
    shapes = {k: v.shape[1:] for k, v in inter.items()}
    if name.startswith("wrn"):
        k = FEAT_DIMS[name] // 64
        assert set(shapes) == {"stem", "stage1", "stage2", "stage3", "final"}
        assert shapes == {
            "stem": (32, 32, 16),
            "stage1": (32, 32, 16 * k),
            "stage2": (16, 16, 32 * k),
            "stage3": (8, 8, 64 * k),
            "final": (8, 8, 64 * k),
        }
    else:
        expansion = 4 if name.startswith("resnet50") else 1
        width = 8 if name == "resnet_tiny" else 64
        s = 8 if name.endswith("imagenet") else 32  # 'imagenet' stem: /2 conv, /2 max-pool
        assert set(shapes) == {"stem", "stage1", "stage2", "stage3", "stage4"}
        assert shapes["stem"] == (s, s, width)
        for i in range(4):
            side = max(s // 2**i, 1)
            assert shapes[f"stage{i + 1}"] == (side, side, width * 2**i * expansion)


def test_imagenet_stem_tiny_at_64x64_matches_numpy():
    model = R.ResNet("basic", (1, 1, 1, 1), width=8, stem="imagenet", rngs=rngs(3))
    model.eval()  # running stats (0, 1) -> BN is the affine map gamma * x / sqrt(1 + eps) + beta
    x = images(1, 2, size=64)
    feats, inter = run(model, x)
    assert feats.shape == (2, 64)
    assert {k: v.shape[1:3] for k, v in inter.items()} == {
        "stem": (16, 16),
        "stage1": (16, 16),
        "stage2": (8, 8),
        "stage3": (4, 4),
        "stage4": (2, 2),
    }
    # 7x7 / stride 2 conv with symmetric padding 3 (PyTorch's), BN, ReLU, 3x3 / stride 2 max-pool.
    conv = np_conv(x, model.stem_conv.kernel[...], stride=2, pad=3)
    gamma, beta = np.asarray(model.stem_bn.scale[...]), np.asarray(model.stem_bn.bias[...])
    ref = np_max_pool_3x3_s2(np.maximum(conv / np.sqrt(1 + EPS) * gamma + beta, 0))
    np.testing.assert_allclose(inter["stem"], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TINY)
def test_features_are_the_spatial_mean_of_the_last_stage(name):
    feats, inter = run(tiny(name), images(0))
    last = inter["final" if name == "wrn_tiny" else "stage4"]
    np.testing.assert_allclose(feats, np.asarray(last, np.float64).mean(axis=(1, 2)), atol=1e-5)
    assert float(jnp.min(last)) >= 0.0  # post-ReLU maps


# ------------------------------------------------------------------------------------ init


def test_conv_init_is_kaiming_normal_fan_out():
    kernel = np.asarray(tiny("resnet_tiny").stages[3][0].conv2.kernel[...], np.float64)  # [3, 3, 64, 64]
    expected_std = math.sqrt(2.0 / (3 * 3 * 64))
    assert abs(kernel.std() / expected_std - 1) < 0.03
    assert abs(kernel.mean()) < 3 * expected_std / math.sqrt(kernel.size)
    assert np.abs(kernel).max() > 2.5 * expected_std  # untruncated normal (PyTorch's kaiming_normal_)


def test_zero_init_residual_makes_blocks_start_as_their_shortcut():
    model = R.ResNet("basic", (1, 1, 1, 1), width=8, zero_init_residual=True, rngs=rngs(0))
    for stage in model.stages:
        for blk in stage:
            assert np.all(np.asarray(blk.bn2.scale[...]) == 0)
            assert np.all(np.asarray(blk.bn1.scale[...]) == 1)
    _, inter = run(model, images(0))
    # stage1 is an identity-shortcut block: relu(0 + x) = x for the post-ReLU stem output
    np.testing.assert_array_equal(inter["stage1"], inter["stem"])
    bottleneck = R.ResNet("bottleneck", (1,), width=8, zero_init_residual=True, rngs=rngs(0))
    assert np.all(np.asarray(bottleneck.stages[0][0].bn3.scale[...]) == 0)
    assert np.all(np.asarray(tiny("resnet_tiny").stages[0][0].bn2.scale[...]) == 1)  # default: off


# ------------------------------------------------------------------------------ BatchNorm modes


def np_stem(model, x, mean, var):
    """float64 reference of the CIFAR stem: relu(BN(conv3x3(x))) with the given statistics."""
    conv = np_conv(x, model.stem_conv.kernel[...], stride=1, pad=1)
    gamma, beta = np.asarray(model.stem_bn.scale[...]), np.asarray(model.stem_bn.bias[...])
    return np.maximum((conv - mean) / np.sqrt(var + EPS) * gamma + beta, 0), conv


def test_train_mode_uses_batch_stats_and_moves_running_stats_with_momentum():
    model = tiny("resnet_tiny")
    x = images(2)
    conv = np_conv(x, model.stem_conv.kernel[...], stride=1, pad=1)  # [4, 16, 16, 8] float64
    batch_mean, batch_var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))  # biased variance
    ref, _ = np_stem(model, x, batch_mean, batch_var)
    for step in range(1, 4):
        _, inter = run(model, x)
        np.testing.assert_allclose(inter["stem"], ref, rtol=1e-4, atol=1e-4)
        decay = MOMENTUM**step  # running <- m * running + (1 - m) * batch, from (0, 1)
        np.testing.assert_allclose(model.stem_bn.mean[...], (1 - decay) * batch_mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(model.stem_bn.var[...], decay + (1 - decay) * batch_var, rtol=1e-4)
    # in train mode an example's output depends on the rest of the batch
    other = jnp.concatenate([x[:1], 3.0 + images(5)[1:]])
    assert not np.allclose(features(model, x)[0], features(model, other)[0], atol=1e-3)


@pytest.mark.parametrize("name", TINY)
def test_eval_mode_is_per_example_and_leaves_running_stats(name):
    model = tiny(name)
    run(model, images(7))  # one train step so the running stats are not the initial (0, 1)
    eval_view = nnx.view(model, use_running_average=True)  # shares the state, model stays in train mode
    model.eval()
    stats = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    x = images(2)
    full = features(model, x)
    # the same example among other companions, at another position: same features
    mixed = features(model, jnp.concatenate([5.0 + images(9)[:3], x[1:2]]))
    np.testing.assert_allclose(mixed[-1], full[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(features(model, x), full)
    np.testing.assert_array_equal(features(eval_view, x), full)
    after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, after, stats)
    if name == "resnet_tiny":  # eval BN uses the running stats: float64 check of the stem
        _, inter = run(model, x)
        ref, _ = np_stem(
            model, x, np.asarray(model.stem_bn.mean[...], np.float64), np.asarray(model.stem_bn.var[...], np.float64)
        )
        np.testing.assert_allclose(inter["stem"], ref, rtol=1e-4, atol=1e-4)
    model.train()
    assert not np.allclose(features(model, x)[1], full[1], atol=1e-3)


# ------------------------------------------------------------------------------ dtypes and jit


@pytest.mark.parametrize("name", TINY)
def test_bf16_compute_keeps_f32_params(name):
    model16 = R.build_encoder(name, rngs=rngs(0), dtype=jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model16, nnx.Param))} == {jnp.dtype(jnp.float32)}
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model16, nnx.BatchStat))} == {jnp.dtype(jnp.float32)}
    x = images(0)
    feats, inter = run(model16, x)
    assert feats.dtype == jnp.bfloat16
    assert all(v.dtype == jnp.bfloat16 for v in inter.values())
    ref = np.asarray(features(tiny(name), x))  # same seed -> same parameters, float32 compute
    rel = np.linalg.norm(np.asarray(feats, np.float32) - ref) / np.linalg.norm(ref)
    assert rel < 0.05  # bf16 rounding only


def test_every_parameter_gets_a_gradient_in_train_mode():
    model = tiny("resnet_tiny")

    @nnx.jit
    def grads(model, x):
        return nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)

    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads(model, images(4)))]
    assert len(norms) == len(jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert all(np.isfinite(norms)) and min(norms) > 0


def test_jit_matches_eager_in_train_and_eval():
    eager, jitted = tiny("resnet_tiny"), tiny("resnet_tiny")
    x = images(3)
    for mode in ("train", "eval"):
        getattr(eager, mode)()
        getattr(jitted, mode)()
        (fe, ie), (fj, ij) = eager(x, return_intermediates=True), run(jitted, x)
        np.testing.assert_allclose(fj, fe, rtol=1e-4, atol=1e-5)
        assert list(ie) == ["stem", "stage1", "stage2", "stage3", "stage4"]  # eager dict keeps call order
        assert set(ij) == set(ie)
        stats_e = nnx.state(eager, nnx.BatchStat)
        stats_j = nnx.state(jitted, nnx.BatchStat)  # the jitted train call updated these in place
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats_j, stats_e)


def test_sharded_batch_under_jit_uses_global_batch_statistics():
    """4 host devices, batch sharded over a 'data' mesh axis: same output and stats as unsharded."""
    script = textwrap.dedent("""
        import json, os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np
        from flax import nnx
        from jax.sharding import NamedSharding, PartitionSpec as P
        from cl_features.models.resnet import ResNet
        # shard k gets offset 2k, so per-shard statistics would differ from the global ones
        offsets = jnp.repeat(2.0 * jnp.arange(4), 2)[:, None, None, None]
        x = jax.random.normal(jax.random.key(0, impl="rbg"), (8, 8, 8, 3)) + offsets
        forward = nnx.jit(lambda m, x: m(x))
        # a small ResNet and rbg keys: few, cheap compiles in this fresh process
        ref_model = ResNet("basic", (1, 1), width=4, rngs=nnx.Rngs(jax.random.key(0, impl="rbg")))
        sharded_model = nnx.clone(ref_model)
        y_ref = forward(ref_model, x)
        mesh = jax.make_mesh((4,), ("data",))
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        y_sh = forward(sharded_model, xs)
        conv0 = np.asarray(ref_model.stem_conv(x[:2]))
        print(json.dumps({
            "devices": len(xs.sharding.device_set),
            "out_diff": float(jnp.max(jnp.abs(y_sh - y_ref))),
            "mean_diff": float(jnp.max(jnp.abs(sharded_model.stem_bn.mean[...] - ref_model.stem_bn.mean[...]))),
            "local_vs_global": float(np.max(np.abs(
                0.1 * conv0.mean(axis=(0, 1, 2)) - np.asarray(ref_model.stem_bn.mean[...])))),
        }))
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["out_diff"] < 1e-4 and result["mean_diff"] < 1e-5
    assert result["local_vs_global"] > 0.05  # a per-shard mean would have been visibly different


# ------------------------------------------------------------------------------------ dropout


def test_wrn_dropout_follows_key_in_train_and_is_off_in_eval():
    model = R.WideResNet(10, 1, dropout=0.3, rngs=rngs(0))
    forward = nnx.jit(lambda model, x, key: model(x, dropout_key=key))
    x = images(0)
    a = forward(model, x, key(1))
    b = forward(model, x, key(1))
    c = forward(model, x, key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-4)
    model.eval()
    np.testing.assert_array_equal(forward(model, x, key(1)), forward(model, x, key(2)))


# ------------------------------------------------------------------------------------ bad input


def test_bad_input_raises_value_error_naming_the_field():
    with pytest.raises(ValueError, match=r"encoder name must be one of \[.*'resnet18'.*'wrn_tiny'"):
        R.build_encoder("resnet101", rngs=rngs(0))
    with pytest.raises(ValueError, match="depth must be 6n \\+ 4"):
        R.WideResNet(33, 5, rngs=rngs(0))
    model = abstract(lambda: R.build_encoder("resnet_tiny", rngs=rngs(0)))
    with pytest.raises(ValueError, match=r"x must be images \[batch, height, width, 3\]"):
        abstract_forward(model, (2, 32, 32, 1))
    with pytest.raises(ValueError, match="x must be a float array"):
        tiny("resnet_tiny")(jnp.zeros((1, 8, 8, 3), jnp.uint8))


# ------------------------------------------------------------------------------------------ heads


@pytest.mark.parametrize("num_layers", [2, 3])
def test_projection_head_matches_numpy_linear_bn_relu_linear(num_layers):
    head = ProjectionHead(6, 16, 4, num_layers, rngs=rngs(0))
    h = jax.random.normal(key(0), (32, 6))
    z = head(h)
    a = np.asarray(h, np.float64)
    for linear, bn in zip(head.hidden, head.norms):
        assert linear.bias is None  # BN shift replaces the bias
        a = a @ np.asarray(linear.kernel[...], np.float64)
        a = (a - a.mean(0)) / np.sqrt(a.var(0) + EPS) * np.asarray(bn.scale[...]) + np.asarray(bn.bias[...])
        a = np.maximum(a, 0)
    ref = a @ np.asarray(head.out.kernel[...], np.float64) + np.asarray(head.out.bias[...])
    np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-5)
    assert z.shape == (32, 4) and float(jnp.min(z)) < 0  # no ReLU on the output
    hidden_p = 6 * 16 + 2 * 16 + (num_layers - 2) * (16 * 16 + 2 * 16)
    assert num_params(head) == hidden_p + 16 * 4 + 4


def test_projection_head_without_bn_and_in_eval():
    head = ProjectionHead(6, 16, 4, 2, use_bn=False, rngs=rngs(0))
    assert len(head.norms) == 0 and head.hidden[0].bias is not None
    assert num_params(head) == 6 * 16 + 16 + 16 * 4 + 4
    bn_head = ProjectionHead(6, 16, 4, 2, rngs=rngs(0))
    h = jax.random.normal(key(0), (8, 6))
    bn_head.eval()
    np.testing.assert_allclose(bn_head(h[:1]), bn_head(h)[:1], rtol=1e-5, atol=1e-6)


def test_linear_classifier_zero_init_and_affine():
    clf = LinearClassifier(16, 4, rngs=rngs(0))
    h = jax.random.normal(key(0), (4, 16))
    np.testing.assert_array_equal(clf(h), np.zeros((4, 4)))
    assert num_params(clf) == 16 * 4 + 4
    clf = LinearClassifier(16, 4, zero_init=False, rngs=rngs(0))
    ref = np.asarray(h, np.float64) @ np.asarray(clf.linear.kernel[...]) + np.asarray(clf.linear.bias[...])
    np.testing.assert_allclose(clf(h), ref, rtol=1e-5, atol=1e-6)
