"""Colour operations on one image `img: [H, W, 3]` float32 in [0, 1] (brightness to hue: `image_ops.jitter_colors`).

The maths follows SimCLR (google-research/simclr `data_util.py`, i.e. the TF image ops it calls):
  brightness  x * factor                                  (SimCLR v2 multiplicative form)
  contrast    (x - mean_c) * factor + mean_c              (mean per channel over H, W; tf.image.adjust_contrast)
  saturation  HSV: s <- clip(s * factor, 0, 1)            (tf.image.adjust_saturation)
  hue         HSV: h <- (h + delta) mod 1                 (tf.image.adjust_hue)
  grayscale   ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B, kept as 3 channels (PIL convert('L'))
  solarize    x if x < threshold else 1 - x
None of these clip to [0, 1] except where the definition does (saturation); the jitter clips between ops.
Every function is elementwise or a per-image reduction, so it jits and vmaps as is.
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
