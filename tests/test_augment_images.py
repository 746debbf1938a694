"""SimCLR image augmentations: every op against a NumPy / PIL / colorsys / scipy reference."""

import colorsys
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image, ImageEnhance

from cl_features.augment import color as C
from cl_features.augment import image_ops as A
from cl_features.augment import image_sets as S

U8 = 1.0 / 255.0  # one uint8 step
# Compiled once per shape: much faster on CPU than dispatching every primitive eagerly.
resized_crop = jax.jit(A.resized_crop, static_argnums=(2, 3))
crop_box = jax.jit(
    lambda key, *a: A.crop_box(jax.random.uniform(key, (A.CROP_UNIFORMS,)), *a), static_argnums=(1, 2, 3, 4)
)


def _rgb_u8(h=12, w=14, seed=0):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def _special_pixels():
    """Black, white, grays, primaries, ties between channels and random colours: [1, N, 3] float64."""
    fixed = [
        [0, 0, 0],
        [1, 1, 1],
        [0.5, 0.5, 0.5],
        [1, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 1, 0],
        [0, 1, 1],
        [1, 0, 1],
        [0.3, 0.3, 0.7],
        [0.7, 0.7, 0.3],
        [0.2, 0.9, 0.2],
        [0.9, 0.1, 0.9],
    ]
    rand = np.random.RandomState(1).rand(200, 3)
    return np.concatenate([np.asarray(fixed), rand])[None]


def _np_hsv_op(img, fn):
    """Applies fn(h, s, v) -> (h, s, v) per pixel through colorsys (float64 reference)."""
    out = np.empty_like(img, dtype=np.float64)
    for idx in np.ndindex(img.shape[:-1]):
        out[idx] = colorsys.hsv_to_rgb(*fn(*colorsys.rgb_to_hsv(*img[idx])))
    return out


# --------------------------------------------------------------------------- colour ops


def _one_op(j, img, p):
    """One colour op of `jitter_colors` (brightness 0, contrast 1, saturation 2, hue 3) with parameter p."""
    params = jnp.asarray([1.0, 1.0, 1.0, 0.0]).at[j].set(p)
    return A.jitter_colors(jnp.asarray(img, jnp.float32), params, jnp.asarray([0]), ops=(j,))


@pytest.mark.parametrize("factor", [0.0, 0.3, 1.0, 1.7])
def test_brightness_matches_pil(factor):
    x = _rgb_u8()
    ref = np.asarray(ImageEnhance.Brightness(Image.fromarray(x)).enhance(factor)) / 255.0
    ours = np.asarray(_one_op(0, x / 255.0, factor))
    # PIL truncates the blend to uint8: at most one step below ours.
    np.testing.assert_allclose(ours, ref, atol=U8 + 1e-6)


@pytest.mark.parametrize("factor", [0.2, 0.7, 1.8])
def test_contrast_matches_tf_formula_and_pil_on_gray(factor):
    x = _rgb_u8() / 255.0
    ref = (x - x.mean(axis=(0, 1))) * factor + x.mean(axis=(0, 1))  # per-channel mean (SimCLR/TF)
    np.testing.assert_allclose(_one_op(1, x, factor), np.clip(ref, 0, 1), atol=2e-6)
    # On a gray image the per-channel mean is PIL's luminance mean; PIL rounds that mean to an
    # integer and truncates the blend, so allow 1.5 steps.
    g = np.repeat(_rgb_u8()[..., :1], 3, axis=-1)
    pil = np.asarray(ImageEnhance.Contrast(Image.fromarray(g)).enhance(factor)) / 255.0
    ours = np.asarray(_one_op(1, g / 255.0, factor))
    np.testing.assert_allclose(ours, pil, atol=1.5 * U8)


def test_hsv_round_trip_matches_colorsys():
    px = _special_pixels()
    hsv = np.asarray(C.rgb_to_hsv(jnp.asarray(px, jnp.float32)))
    ref = np.asarray([colorsys.rgb_to_hsv(*p) for p in px[0]])[None]
    np.testing.assert_allclose(hsv, ref, atol=2e-6)
    np.testing.assert_allclose(C.hsv_to_rgb(jnp.asarray(ref, jnp.float32)), px, atol=2e-6)


@pytest.mark.parametrize("factor", [0.0, 0.4, 1.0, 1.8])
def test_saturation_matches_colorsys(factor):
    px = _special_pixels()
    ref = _np_hsv_op(px[0], lambda h, s, v: (h, min(1.0, s * factor), v))[None]
    np.testing.assert_allclose(_one_op(2, px, factor), ref, atol=3e-6)


@pytest.mark.parametrize("delta", [-0.5, -0.13, 0.0, 0.07, 0.2, 0.5])
def test_hue_matches_colorsys(delta):
    px = _special_pixels()
    ref = _np_hsv_op(px[0], lambda h, s, v: ((h + delta) % 1.0, s, v))[None]
    np.testing.assert_allclose(_one_op(3, px, delta), ref, atol=3e-6)


def test_grayscale_matches_pil_convert_L():
    x = _rgb_u8()
    ref = np.asarray(Image.fromarray(x).convert("L")) / 255.0
    ours = np.asarray(C.to_grayscale(jnp.asarray(x / 255.0, jnp.float32)))
    assert ours.shape == x.shape
    for ch in range(3):  # PIL rounds to uint8: within half a step
        np.testing.assert_allclose(ours[..., ch], ref, atol=0.5 * U8 + 1e-6)


def test_solarize_matches_numpy():
    x = _rgb_u8() / 255.0
    ref = np.where(x < 0.5, x, 1.0 - x)
    np.testing.assert_allclose(C.solarize(jnp.asarray(x, jnp.float32), 0.5), ref, atol=1e-7)


def test_jitter_colors_applies_ops_in_order_with_clipping():
    x = _rgb_u8(6, 5) / 255.0
    params = np.asarray([1.3, 0.6, 1.5, 0.11])

    def ref_op(j, img):
        p = params[j]
        if j == 0:
            return img * p
        if j == 1:
            return (img - img.mean(axis=(0, 1))) * p + img.mean(axis=(0, 1))
        if j == 2:
            return _np_hsv_op(img, lambda h, s, v: (h, min(1.0, s * p), v))
        return _np_hsv_op(img, lambda h, s, v: ((h + p) % 1.0, s, v))

    outs = []
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        ref = x
        for j in order:
            ref = np.clip(ref_op(j, ref), 0.0, 1.0)
        ours = A.jitter_colors(jnp.asarray(x, jnp.float32), jnp.asarray(params, jnp.float32), jnp.asarray(order))
        np.testing.assert_allclose(ours, ref, atol=1e-5)
        outs.append(np.asarray(ours))
    assert np.abs(outs[0] - outs[1]).max() > 0.01  # the order matters
    # Subsets of ops (affine only, HSV only, mixed, single): order indexes into `ops`.
    for ops, order in (((1, 3), [1, 0]), ((0, 1), [1, 0]), ((2, 3), [0, 1]), ((2,), [0])):
        ref = x
        for i in order:
            ref = np.clip(ref_op(ops[i], ref), 0.0, 1.0)
        ours = A.jitter_colors(
            jnp.asarray(x, jnp.float32), jnp.asarray(params, jnp.float32), jnp.asarray(order), ops=ops
        )
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def _jitter(key, *magnitudes):
    return A.sample_jitter(jax.random.uniform(key, (A.JITTER_UNIFORMS,)), *magnitudes)


def test_sample_jitter_ranges_and_orders():
    keys = jax.random.split(jax.random.key(0), 2000)
    params, order, ops = jax.vmap(lambda k: _jitter(k, 0.4, 0.4, 0.4, 0.1)[:2])(keys) + (None,)
    params, order = np.asarray(params), np.asarray(order)
    lo, hi = np.asarray([0.6, 0.6, 0.6, -0.1]), np.asarray([1.4, 1.4, 1.4, 0.1])
    assert (params >= lo - 1e-6).all() and (params <= hi + 1e-6).all()
    np.testing.assert_allclose(params.mean(0), (lo + hi) / 2, atol=0.01)
    np.testing.assert_allclose(params.std(0), (hi - lo) / math.sqrt(12), rtol=0.05)
    assert (np.sort(order, axis=1) == np.arange(4)).all()
    assert len({tuple(o) for o in order}) == 24  # every permutation occurs
    _, order, ops = _jitter(jax.random.key(1), 0.8, 0.0, 0.8, 0.0)
    assert ops == (0, 2) and sorted(np.asarray(order).tolist()) == [0, 1]
    p, _, _ = _jitter(jax.random.key(1), 1.5, 0.0, 0.0, 0.0)
    assert 0.0 <= float(p[0]) <= 2.5  # brightness factor floored at 0


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("box", [(0, 0, 8, 8), (3, 5, 8, 8), (12, 9, 8, 8), (0, 0, 20, 20)])
@pytest.mark.parametrize("antialias", [True, False])
def test_resized_crop_integer_box_same_size_is_exact_slice(box, antialias):
    x = np.random.RandomState(2).rand(20, 17 + 4, 3).astype(np.float32)
    t, l, h, w = box
    out = resized_crop(jnp.asarray(x), tuple(jnp.int32(v) for v in box), h, antialias)
    np.testing.assert_array_equal(np.asarray(out), x[t : t + h, l : l + w])


def _np_bilinear(img, out):
    """Half-pixel-centre bilinear resize with edge clamping (float64), for upsampling."""

    def axis_weights(n):
        src = np.clip((np.arange(out) + 0.5) * n / out - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        m = np.zeros((out, n))
        m[np.arange(out), i0] += 1 - (src - i0)
        m[np.arange(out), i1] += src - i0
        return m

    return np.einsum("ph,hwc,qw->pqc", axis_weights(img.shape[0]), img, axis_weights(img.shape[1]))


@pytest.mark.parametrize("box,out", [((2, 3, 5, 7), 16), ((0, 0, 9, 6), 11), ((4, 1, 13, 13), 24)])
def test_resized_crop_upsampling_matches_numpy_bilinear(box, out):
    x = np.random.RandomState(3).rand(20, 18, 3)
    t, l, h, w = box
    ref = _np_bilinear(x[t : t + h, l : l + w], out)
    for aa in (True, False):  # antialias only matters when shrinking
        ours = resized_crop(jnp.asarray(x, jnp.float32), box, out, aa)
        np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.parametrize("box,out", [((0, 0, 20, 18), 7), ((3, 2, 16, 12), 5), ((1, 1, 9, 15), 12)])
@pytest.mark.parametrize("antialias", [True, False])
def test_resized_crop_matches_jax_image_resize_of_slice(box, out, antialias):
    x = np.random.RandomState(4).rand(20, 18, 3).astype(np.float32)
    t, l, h, w = box
    ref = jax.image.resize(x[t : t + h, l : l + w], (out, out, 3), "linear", antialias=antialias)
    np.testing.assert_allclose(resized_crop(jnp.asarray(x), box, out, antialias), ref, atol=2e-6)


def _np_crop_boxes(rng, n, height, width, scale, ratio):
    """torchvision RandomResizedCrop.get_params in NumPy: [n, 4] (top, left, h, w)."""
    boxes = []
    for _ in range(n):
        for _ in range(10):
            area = height * width * rng.uniform(*scale)
            r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = int(round(math.sqrt(area * r))), int(round(math.sqrt(area / r)))
            if 0 < w <= width and 0 < h <= height:
                boxes.append((rng.randint(0, height - h + 1), rng.randint(0, width - w + 1), h, w))
                break
        else:  # centre fallback; the image is square and `ratio` contains 1 in these tests
            boxes.append((0, 0, height, width))
    return np.asarray(boxes, dtype=np.float64)


@pytest.mark.parametrize("scale,ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.2, 0.6), (0.5, 2.0))])
def test_crop_box_statistics_match_torchvision_algorithm(scale, ratio):
    height, width, n = 64, 64, 3000
    keys = jax.random.split(jax.random.key(5), n)
    boxes = jax.jit(
        jax.vmap(lambda k: A.crop_box(jax.random.uniform(k, (A.CROP_UNIFORMS,)), height, width, scale, ratio))
    )(keys)
    boxes = np.stack([np.asarray(v) for v in boxes], axis=1).astype(np.float64)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    area, log_r = h * w / (height * width), np.log(w / h)
    # Rounding w and h to pixels moves area and ratio by at most ~1 px per side.
    assert (area >= scale[0] * (1 - 2 / math.sqrt(scale[0] * height * width)) - 1e-9).all()
    assert (area <= scale[1] + 2.5 / height).all()
    assert (np.abs(log_r) <= math.log(ratio[1]) + 2.5 / math.sqrt(scale[0] * height * width)).all()

    ref = _np_crop_boxes(np.random.RandomState(0), 20000, height, width, scale, ratio)
    ref_area, ref_log_r = ref[:, 2] * ref[:, 3] / (height * width), np.log(ref[:, 3] / ref[:, 2])
    se = lambda v: 4 * v.std() / math.sqrt(n)  # 4 standard errors
    assert abs(area.mean() - ref_area.mean()) < se(ref_area)
    assert abs(area.std() - ref_area.std()) < 0.1 * ref_area.std()
    assert abs(log_r.mean() - ref_log_r.mean()) < se(ref_log_r)
    assert abs(log_r.std() - ref_log_r.std()) < 0.1 * ref_log_r.std()
    slack_t, slack_l = height - h, width - w  # position uniform over the free range
    for pos, slack in ((top, slack_t), (left, slack_l)):
        ok = slack > 0
        assert abs((pos[ok] / slack[ok]).mean() - 0.5) < 0.03


def test_crop_box_falls_back_to_centre_crop():
    # Aspect ratio >= 2 and full area can never fit a square image: fallback is the centred box
    # of the clamped ratio, w = W, h = round(W / 2).
    for seed in range(5):
        box = [int(v) for v in crop_box(jax.random.key(seed), 30, 30, (1.0, 1.0), (2.0, 3.0))]
        assert box == [(30 - 15) // 2, 0, 15, 30]
    box = [int(v) for v in crop_box(jax.random.key(0), 20, 50, (1.0, 1.0), (0.5, 1.0))]
    assert box == [0, (50 - 20) // 2, 20, 20]


def test_hflip_exact():
    x = _rgb_u8()
    np.testing.assert_array_equal(A.hflip(jnp.asarray(x)), x[:, ::-1])


@pytest.mark.parametrize("padding,scipy_mode", [("constant", "constant"), ("reflect", "mirror")])
@pytest.mark.parametrize("sigma,size", [(0.5, 3), (1.3, 5), (2.0, 7)])
def test_gaussian_blur_matches_scipy(padding, scipy_mode, sigma, size):
    x = np.random.RandomState(6).rand(11, 13, 3)
    taps = np.arange(-(size // 2), size // 2 + 1)
    k = np.exp(-(taps**2) / (2 * sigma**2))
    k /= k.sum()
    ref = scipy.ndimage.correlate1d(x, k, axis=0, mode=scipy_mode, cval=0.0)
    ref = scipy.ndimage.correlate1d(ref, k, axis=1, mode=scipy_mode, cval=0.0)
    ours = A.gaussian_blur(jnp.asarray(x, jnp.float32), sigma, size, padding)
    np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_blur_kernel_size_follows_simclr():
    assert A.blur_kernel_size(0.1, 32) == 3  # SimCLR: height // 10 = 3 -> radius 1
    assert A.blur_kernel_size(0.1, 224) == 23  # 22 -> radius 11 -> 23 taps
    assert A.blur_kernel_size(0.1, 70) == 7
    assert A.blur_kernel_size(0.1, 9) == 1  # no blur on tiny images
    np.testing.assert_array_equal(A.gaussian_blur(jnp.ones((4, 4, 3)), 1.0, 1), np.ones((4, 4, 3)))


# --------------------------------------------------------------------------- pipeline


def _batch_u8(b=6, size=16, seed=7):
    return (np.random.RandomState(seed).rand(b, size, size, 3) * 255).astype(np.uint8)


def _keys(n, seed=0):
    return jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(n))


@functools.cache
def _jitted(name, out_size):
    return _jit(S.named_set(name), out_size)


def _jit(cfg, out_size):
    return jax.jit(lambda k, x: A.augment_images(k, x, cfg, out_size))


def _unit(x):
    return x.astype(np.float32) / np.float32(255)


def test_none_set_is_identity_and_resize_only_when_sizes_differ():
    x = _batch_u8()
    out = _jitted("none", 16)(_keys(6), x)
    assert out.dtype == jnp.float32
    # XLA may turn "/ 255" into "* (1 / 255)": equal up to one float32 ulp.
    np.testing.assert_allclose(np.asarray(out), _unit(x), rtol=1.2e-7, atol=0)
    xf = _unit(x)
    np.testing.assert_array_equal(_jitted("none", 16)(_keys(6), xf), xf)
    out = _jitted("none", 10)(_keys(6), xf)
    ref = jax.image.resize(xf, (6, 10, 10, 3), "linear", antialias=True)
    np.testing.assert_allclose(out, ref, atol=2e-6)


def test_full_area_square_crop_is_identity():
    cfg = S.named_set("crop")
    cfg.crop.scale, cfg.crop.ratio = (1.0, 1.0), (1.0, 1.0)
    xf = _unit(_batch_u8())
    np.testing.assert_array_equal(_jit(cfg, 16)(_keys(6), xf), xf)


@pytest.mark.parametrize("prob,expect", [(0.0, 0.0), (1.0, 1.0), (0.5, 0.5)])
def test_flip_probability(prob, expect):
    cfg = S.named_set("none")
    cfg.flip.enabled, cfg.flip.prob = True, prob
    xf = np.repeat(_unit(_batch_u8(1, 8)), 400, axis=0)
    out = np.asarray(_jit(cfg, 8)(_keys(400), xf))
    flipped = (out == xf[:, :, ::-1]).all(axis=(1, 2, 3))
    same = (out == xf).all(axis=(1, 2, 3))
    assert (flipped ^ same).all()  # exactly one of the two, bit for bit
    assert abs(flipped.mean() - expect) < 0.08


def test_grayscale_and_jitter_probabilities():
    cfg = S.named_set("none")
    cfg.grayscale.enabled = True
    x = np.repeat(_batch_u8(1, 8), 500, axis=0)
    out = np.asarray(_jit(cfg, 8)(_keys(500), x))
    gray = (np.ptp(out, axis=-1) < 1e-6).all(axis=(1, 2))
    assert abs(gray.mean() - 0.2) < 0.06
    cfg = S.named_set("none")
    cfg.color_jitter.enabled = True
    out = np.asarray(_jit(cfg, 8)(_keys(500), x))
    changed = np.abs(out - x / 255.0).max(axis=(1, 2, 3)) > 1e-4
    assert abs(changed.mean() - 0.8) < 0.06


@pytest.mark.parametrize("name", S.NAMED_SETS)
def test_named_sets_shapes_ranges_and_determinism(name):
    x = _batch_u8(4, 20)
    f = _jitted(name, 12)
    a, b = f(_keys(4), x), f(_keys(4), x)
    assert a.shape == (4, 12, 12, 3) and a.dtype == jnp.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_array_equal(a, b)
    if name != "none":
        c = f(_keys(4, seed=1), x)
        assert np.abs(np.asarray(a) - np.asarray(c)).max(axis=(1, 2, 3)).min() > 1e-3


def test_vmapped_batch_equals_per_example_loop():
    d = S.validate(S.named_set("simclr"))
    x = _batch_u8(3, 16)
    keys = _keys(3)
    batched = np.asarray(_jitted("simclr", 16)(keys, x))
    one = jax.jit(lambda k, img: A.augment_image(k, img.astype(jnp.float32) / 255, d, 16))
    loop = np.stack([np.asarray(one(keys[i], x[i])) for i in range(3)])
    np.testing.assert_allclose(batched, loop, atol=1e-6)


def _cheap_cfg():
    """flip, grayscale and solarize only: quick to run eagerly and to compile."""
    cfg = S.named_set("none")
    cfg.flip.enabled = cfg.grayscale.enabled = cfg.solarize.enabled = True
    cfg.grayscale.prob = cfg.solarize.prob = 0.5
    return cfg


def test_jit_matches_eager():
    x = _batch_u8(8, 6)
    eager = A.augment_images(_keys(8), x, _cheap_cfg(), 6)
    jitted = jax.jit(lambda k, x: A.augment_images(k, x, _cheap_cfg(), 6))(_keys(8), x)
    np.testing.assert_allclose(jitted, eager, atol=1e-6)


def test_two_views_keys_from_example_ids():
    cfg = S.named_set("simclr")
    x = _batch_u8(4, 16)
    f = jax.jit(lambda k, x, ids: A.two_views(k, x, cfg, 16, ids))
    key = jax.random.key(3)
    v1, v2 = f(key, x, jnp.arange(4))
    assert np.abs(np.asarray(v1) - np.asarray(v2)).max(axis=(1, 2, 3)).min() > 1e-3
    # The views match augment_images with the documented keys fold_in(key, id) split in two.
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i), 2))(jnp.arange(4))
    np.testing.assert_allclose(_jitted("simclr", 16)(keys[:, 0], x), v1, atol=1e-6)
    np.testing.assert_allclose(_jitted("simclr", 16)(keys[:, 1], x), v2, atol=1e-6)
    # Example i's views depend only on (key, id), not on its place in the batch (sharding).
    perm = np.asarray([2, 0, 3, 1])
    p1, p2 = f(key, x[perm], jnp.asarray(perm))
    np.testing.assert_allclose(p1, np.asarray(v1)[perm], atol=1e-6)
    np.testing.assert_allclose(p2, np.asarray(v2)[perm], atol=1e-6)
    # Same image under different ids -> different views.
    w1, _ = f(key, np.repeat(x[:1], 4, axis=0), jnp.arange(4))
    assert np.abs(np.asarray(w1[0]) - np.asarray(w1[1])).max() > 1e-3
    # Default ids are arange(B).
    c1, c2 = A.two_views(key, x[:, :6, :6], _cheap_cfg(), 6)
    e1, e2 = A.two_views(key, x[:, :6, :6], _cheap_cfg(), 6, jnp.arange(4))
    assert np.abs(np.asarray(c1) - np.asarray(c2)).max() > 0.1
    np.testing.assert_array_equal(c1, e1)
    np.testing.assert_array_equal(c2, e2)


def test_op_draws_do_not_depend_on_which_ops_are_on():
    x = _batch_u8(4, 20)
    cfg = S.named_set("crop_flip_color")
    cfg.flip.prob, cfg.color_jitter.prob, cfg.grayscale.prob = 0.0, 0.0, 0.0  # on, never applied
    cfg.solarize.enabled = True  # prob 0.0
    np.testing.assert_array_equal(_jit(cfg, 12)(_keys(4), x), _jitted("crop", 12)(_keys(4), x))


# --------------------------------------------------------------------------- config errors


def test_named_set_unknown_lists_allowed():
    with pytest.raises(ValueError, match="none.*crop.*simclr"):
        S.named_set("byol")


def test_named_sets_validate_and_switch_ops():
    on = {n: [op for op in S.DEFAULTS if S.named_set(n)[op].enabled] for n in S.NAMED_SETS}
    assert on == {
        "none": [],
        "crop": ["crop"],
        "crop_flip": ["crop", "flip"],
        "crop_flip_color": ["crop", "flip", "color_jitter", "grayscale"],
        "simclr": ["crop", "flip", "color_jitter", "grayscale", "blur"],
    }
    for n in S.NAMED_SETS:
        S.validate(S.named_set(n))


@pytest.mark.parametrize(
    "path,value,msg",
    [
        ("crop.scale", (0.0, 1.0), r"augment\.crop\.scale must be \(lo, hi\) with 0 < lo <= hi <= 1"),
        ("crop.scale", (0.9, 0.5), r"augment\.crop\.scale"),
        ("crop.ratio", (2.0, 1.0), r"augment\.crop\.ratio"),
        ("crop.antialias", 1, r"augment\.crop\.antialias must be a bool"),
        ("flip.prob", 1.5, r"augment\.flip\.prob must be a number in \[0, 1\]"),
        ("flip.enabled", "yes", r"augment\.flip\.enabled must be a bool"),
        ("color_jitter.strength", -1.0, r"augment\.color_jitter\.strength"),
        ("color_jitter.contrast", 2.5, r"augment\.color_jitter\.contrast must be at most 1"),
        ("color_jitter.hue", 1.2, r"augment\.color_jitter\.hue must be at most 0\.5"),
        ("grayscale.prob", -0.1, r"augment\.grayscale\.prob"),
        ("blur.sigma", (0.0, 2.0), r"augment\.blur\.sigma"),
        ("blur.kernel_frac", 1.5, r"augment\.blur\.kernel_frac"),
        ("blur.padding", "wrap", r"augment\.blur\.padding must be one of \('constant', 'reflect'\)"),
        ("solarize.threshold", 2.0, r"augment\.solarize\.threshold"),
    ],
)
def test_bad_config_names_the_field(path, value, msg):
    cfg = S.named_set("simclr").to_dict()  # a plain dict: ConfigDict would refuse a type change
    op, field = path.split(".")
    cfg[op][field] = value
    with pytest.raises(ValueError, match=msg):
        S.validate(cfg)
    with pytest.raises(ValueError, match=msg):
        A.augment_images(_keys(2), _batch_u8(2, 8), cfg, 8)


def test_unknown_or_missing_fields_are_named():
    cfg = S.named_set("crop")
    cfg.crop.size = 3
    with pytest.raises(ValueError, match=r"augment\.crop must have exactly.*unknown \['size'\]"):
        S.validate(cfg)
    cfg = S.named_set("crop").to_dict()
    del cfg["blur"]
    with pytest.raises(ValueError, match=r"missing \['blur'\]"):
        S.validate(cfg)


def test_bad_images_or_out_size():
    cfg = S.named_set("crop")
    with pytest.raises(ValueError, match=r"images must be \[batch, H, W, 3\]"):
        A.augment_images(_keys(2), np.zeros((2, 8, 8), np.uint8), cfg, 8)
    with pytest.raises(ValueError, match="uint8.*float.*int32"):
        A.augment_images(_keys(2), np.zeros((2, 8, 8, 3), np.int32), cfg, 8)
    with pytest.raises(ValueError, match="out_size must be a positive int"):
        A.two_views(jax.random.key(0), np.zeros((2, 8, 8, 3), np.uint8), cfg, 0)
