"""Colour operations on one image `img: [H, W, 3]` float32 in [0, 1], SimCLR's maths (the TF image ops).

brightness x * f; contrast (x - mean_c) * f + mean_c; saturation s <- clip(s * f, 0, 1) and hue h <- (h + d) mod 1
in HSV (fused in `image_ops.jitter_colors`); grayscale: ITU-R 601-2 luma on 3 channels; solarize.
"""

import jax.numpy as jnp

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_hsv(img):
    """img: [..., 3] RGB in [0, 1] -> [..., 3] HSV, every component in [0, 1] (colorsys convention)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    v = jnp.max(img, axis=-1)
    chroma = v - jnp.min(img, axis=-1)
    s = jnp.where(v > 0, chroma / jnp.where(v > 0, v, 1.0), 0.0)
    c = jnp.where(chroma > 0, chroma, 1.0)
    h = jnp.where(v == r, jnp.mod((g - b) / c, 6.0), jnp.where(v == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    h = jnp.where(chroma > 0, h / 6.0, 0.0)
    return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv):
    """hsv: [..., 3] in [0, 1] -> [..., 3] RGB; hue is taken modulo 1."""
    h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
    n = jnp.asarray([5.0, 3.0, 1.0], hsv.dtype)
    k = jnp.mod(n + 6.0 * h, 6.0)
    return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def to_grayscale(img):
    """img: [H, W, 3] -> [H, W, 3], every channel the ITU-R 601-2 luma."""
    wr, wg, wb = LUMA_WEIGHTS
    luma = wr * img[..., 0] + wg * img[..., 1] + wb * img[..., 2]  # elementwise: exact f32 on TPU too
    return jnp.broadcast_to(luma[..., None], img.shape)


def solarize(img, threshold):
    """img: [H, W, 3]; pixels at or above `threshold` are inverted (1 - x)."""
    return jnp.where(img < threshold, img, 1.0 - img)
