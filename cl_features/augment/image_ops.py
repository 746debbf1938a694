"""SimCLR image augmentations in JAX, on device inside the jitted step (their config: `image_sets`).

Ops are pure functions of one image `img: [H, W, 3]` float32 in [0, 1] and explicit parameters, with static
shapes (the crop is a pair of interpolation matrices); `augment_image` composes them for one example and
`augment_images` / `two_views` vmap it. Pipeline (SimCLR's `preprocess_for_train` + blur): random resized crop
(torchvision's RandomResizedCrop) -> flip -> colour jitter (SimCLR v2, random order) -> grayscale -> blur ->
solarize -> clip. One `jax.random.uniform` per example feeds every op from fixed slots, so switching one op
does not change the others' draws.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cl_features.augment.color import hsv_to_rgb, rgb_to_hsv, solarize, to_grayscale
from cl_features.augment.image_sets import BLUR_PADDINGS, validate

CROP_ATTEMPTS = 10
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # slot order of `jitter_colors` params


# --------------------------------------------------------------------------- geometry


CROP_UNIFORMS = 2 * CROP_ATTEMPTS + 2  # area and ratio per attempt, then top and left


def crop_box(u, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """u: [CROP_UNIFORMS] uniforms in [0, 1) -> int32 (top, left, h, w) in a `height x width` image.

    Area U(scale) * H * W, aspect w/h log-uniform in `ratio`; the first of CROP_ATTEMPTS that fits, at a uniform
    position; else the largest centred box with its aspect clamped into `ratio`.
    """
    n = CROP_ATTEMPTS
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:n])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_lo + (log_hi - log_lo) * u[n : 2 * n])
    ws = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    hs = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    fits = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first = jnp.argmax(fits)

    in_ratio = width / height  # the fallback box is static
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height

    found = fits[first]
    h = jnp.where(found, hs[first], fh)
    w = jnp.where(found, ws[first], fw)

    def uniform_int(v, count):  # uniform in {0, ..., count - 1}
        return jnp.minimum(jnp.floor(v * count).astype(jnp.int32), count - 1)

    top = jnp.where(found, uniform_int(u[2 * n], height - h + 1), (height - fh) // 2)
    left = jnp.where(found, uniform_int(u[2 * n + 1], width - w + 1), (width - fw) // 2)
    return top.astype(jnp.int32), left.astype(jnp.int32), h.astype(jnp.int32), w.astype(jnp.int32)


def _resize_matrix(start, length, in_size: int, out_size: int, antialias: bool):
    """[out_size, in_size] triangle-filter weights resampling pixels [start, start + length) (half-pixel centres;
    antialias widens the kernel by the downscale factor, as jax.image.resize)."""
    length = jnp.asarray(length, jnp.float32)
    step = length / out_size
    centres = jnp.asarray(start, jnp.float32) + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * step
    support = jnp.maximum(step, 1.0) if antialias else 1.0
    pix = jnp.arange(in_size)
    dist = (pix[None, :].astype(jnp.float32) + 0.5 - centres[:, None]) / support
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(dist))
    inside = (pix >= start) & (pix < start + length)
    weights = jnp.where(inside[None, :], weights, 0.0)
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def resized_crop(img, box, out_size: int, antialias: bool = True):
    """img: [H, W, C]; box: (top, left, h, w) ints (may be traced) -> bilinear resize [out_size, out_size, C]."""
    top, left, h, w = box
    height, width = img.shape[-3], img.shape[-2]
    rows = _resize_matrix(top, h, height, out_size, antialias)  # [out, H]
    cols = _resize_matrix(left, w, width, out_size, antialias)  # [out, W]
    hi = jax.lax.Precision.HIGHEST
    out = jnp.einsum("ph,hwc->pwc", rows, img.astype(jnp.float32), precision=hi)
    return jnp.einsum("qw,pwc->pqc", cols, out, precision=hi)


def hflip(img):
    """img: [H, W, C] mirrored left-right."""
    return img[:, ::-1, :]


def blur_kernel_size(kernel_frac: float, image_size: int) -> int:
    """SimCLR's blur size: int(kernel_frac * size) made odd as 2 * (k // 2) + 1 (10% -> 3 px at 32)."""
    k = int(math.floor(kernel_frac * image_size + 1e-6))
    return 2 * (k // 2) + 1


def gaussian_blur(img, sigma, kernel_size: int, padding: str = "constant"):
    """img: [H, W, C] -> separable Gaussian blur of `kernel_size` (static) taps; padding 'constant' (SimCLR) or
    'reflect' (torchvision)."""
    if padding not in BLUR_PADDINGS:
        raise ValueError(f"padding must be one of {BLUR_PADDINGS}, got {padding!r}")
    radius = kernel_size // 2
    if radius == 0:
        return img
    taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    kernel = jnp.exp(-(taps**2) / (2.0 * jnp.asarray(sigma, jnp.float32) ** 2))
    kernel = kernel / jnp.sum(kernel)
    height, width = img.shape[0], img.shape[1]
    padded = jnp.pad(img, ((radius, radius), (0, 0), (0, 0)), mode=padding)
    img = sum(kernel[t] * padded[t : t + height] for t in range(2 * radius + 1))
    padded = jnp.pad(img, ((0, 0), (radius, radius), (0, 0)), mode=padding)
    return sum(kernel[t] * padded[:, t : t + width] for t in range(2 * radius + 1))


# --------------------------------------------------------------------------- colour


def jitter_colors(img, params, order, ops=(0, 1, 2, 3)):
    """img: [H, W, 3]; params: [4] (brightness, contrast, saturation factors, hue delta); ops: static slots in
    use (indices into JITTER_OPS); order: [len(ops)], step i applies ops[order[i]], clipping after each.

    Fused for vmap: brightness/contrast are one affine map, saturation/hue one HSV round trip.
    """
    slots = jnp.asarray(ops, jnp.int32)
    affine = any(j in (0, 1) for j in ops)
    hsv = any(j in (2, 3) for j in ops)

    def step(i, x):
        op = slots[order[i]]
        p = params[op]
        candidates = []
        if affine:  # brightness: x * p; contrast: x * p + mean * (1 - p)
            mean = jnp.mean(x, axis=(0, 1))
            candidates.append(x * p + jnp.where(op == 1, mean * (1.0 - p), 0.0))
        if hsv:
            h, s, v = jnp.moveaxis(rgb_to_hsv(x), -1, 0)
            s = jnp.where(op == 2, jnp.clip(s * p, 0.0, 1.0), s)
            h = jnp.where(op == 3, jnp.mod(h + p, 1.0), h)
            candidates.append(hsv_to_rgb(jnp.stack([h, s, v], axis=-1)))
        out = candidates[0] if len(candidates) == 1 else jnp.where(op <= 1, *candidates)
        return jnp.clip(out, 0.0, 1.0)

    return jax.lax.fori_loop(0, len(ops), step, img)


JITTER_UNIFORMS = 8  # 4 parameters, then 4 order keys


def sample_jitter(u, brightness, contrast, saturation, hue, random_order=True):
    """u: [JITTER_UNIFORMS] uniforms -> (params [4], order [n], ops) for magnitudes already times strength.

    Factors U[max(0, 1-b), 1+b], U[1-c, 1+c], U[1-s, 1+s], hue delta U[-h, h]; zero magnitudes are left out of
    `ops`; order is a uniform permutation (identity without random_order).
    """
    mags = (brightness, contrast, saturation, hue)
    ops = tuple(j for j in range(4) if mags[j] > 0)
    lo = jnp.asarray([max(0.0, 1.0 - brightness), 1.0 - contrast, 1.0 - saturation, -hue])
    hi = jnp.asarray([1.0 + brightness, 1.0 + contrast, 1.0 + saturation, hue])
    params = lo + u[:4] * (hi - lo)
    if random_order and len(ops) > 1:
        order = jnp.argsort(u[4 : 4 + len(ops)])  # ranks of iid uniforms: a uniform permutation
    else:
        order = jnp.arange(len(ops))
    return params, order, ops


# --------------------------------------------------------------------------- pipeline


# op -> number of uniforms in its fixed slot
_SLOTS = (
    ("crop", CROP_UNIFORMS),
    ("flip", 1),
    ("color_jitter", 1 + JITTER_UNIFORMS),
    ("grayscale", 1),
    ("blur", 2),
    ("solarize", 1),
)


def _split_uniforms(key):
    u = jax.random.uniform(key, (sum(n for _, n in _SLOTS),))
    out, at = {}, 0
    for name, n in _SLOTS:
        out[name], at = u[at : at + n], at + n
    return out


def _maybe(u, prob: float, fn, img):
    """fn(img) if the uniform u < prob, else img (both computed: this runs under vmap)."""
    if prob <= 0.0:
        return img
    if prob >= 1.0:
        return fn(img)
    return jnp.where(u < prob, fn(img), img)


def augment_image(key, img, cfg: dict, out_size: int):
    """key, img: [H, W, 3] in [0, 1] -> [out_size, out_size, 3]; cfg: the plain dict from `validate`."""
    u = _split_uniforms(key)
    height, width = img.shape[0], img.shape[1]
    c = cfg["crop"]
    if c["enabled"]:
        box = crop_box(u["crop"], height, width, tuple(c["scale"]), tuple(c["ratio"]))
        img = resized_crop(img, box, out_size, c["antialias"])
    elif (height, width) != (out_size, out_size):
        img = resized_crop(img, (0, 0, height, width), out_size, c["antialias"])

    if cfg["flip"]["enabled"]:
        img = _maybe(u["flip"][0], cfg["flip"]["prob"], hflip, img)

    j = cfg["color_jitter"]
    if j["enabled"]:
        magnitudes = [j[op] * j["strength"] for op in JITTER_OPS]
        params, order, ops = sample_jitter(u["color_jitter"][1:], *magnitudes, j["random_order"])
        if ops:
            img = _maybe(u["color_jitter"][0], j["prob"], lambda x: jitter_colors(x, params, order, ops), img)

    if cfg["grayscale"]["enabled"]:
        img = _maybe(u["grayscale"][0], cfg["grayscale"]["prob"], to_grayscale, img)

    b = cfg["blur"]
    if b["enabled"]:
        size = blur_kernel_size(b["kernel_frac"], out_size)
        sigma = b["sigma"][0] + (b["sigma"][1] - b["sigma"][0]) * u["blur"][1]
        img = _maybe(u["blur"][0], b["prob"], lambda x: gaussian_blur(x, sigma, size, b["padding"]), img)

    t = cfg["solarize"]
    if t["enabled"]:
        img = _maybe(u["solarize"][0], t["prob"], lambda x: solarize(x, t["threshold"]), img)
    return jnp.clip(img, 0.0, 1.0)


def _checked(cfg, images, out_size) -> dict:
    """validate(cfg) as a plain dict, after checking the batch and out_size."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [batch, H, W, 3], got shape {images.shape}")
    if not (images.dtype == jnp.uint8 or jnp.issubdtype(images.dtype, jnp.floating)):
        raise ValueError(f"images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")
    if not (isinstance(out_size, (int, np.integer)) and out_size > 0):
        raise ValueError(f"out_size must be a positive int, got {out_size!r}")
    return validate(cfg)


def _to_unit(img):
    return img.astype(jnp.float32) / 255.0 if img.dtype == jnp.uint8 else img.astype(jnp.float32)


def augment_images(keys, images, cfg: Any, out_size: int):
    """keys: [B]; images: [B, H, W, 3] uint8 or float in [0, 1] -> [B, out_size, out_size, 3] float32."""
    d = _checked(cfg, images, out_size)
    return jax.vmap(lambda k, x: augment_image(k, _to_unit(x), d, out_size))(keys, images)


def two_views(key, images, cfg: Any, out_size: int, example_ids=None):
    """Two independent augmentations of every image: (view1, view2), each [B, out, out, 3].

    Example i uses fold_in(key, example_ids[i]) (default ids: arange(B)), split into one key per view.
    """
    d = _checked(cfg, images, out_size)
    if example_ids is None:
        example_ids = jnp.arange(images.shape[0])
    example_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids)
    view_keys = jax.vmap(lambda k: jax.random.split(k, 2))(example_keys)  # [B, 2]
    per_view = jax.vmap(lambda k, x: augment_image(k, x, d, out_size), in_axes=(0, None))
    views = jax.vmap(lambda ks, x: per_view(ks, _to_unit(x)))(view_keys, images)  # [B, 2, o, o, 3]
    return views[:, 0], views[:, 1]
