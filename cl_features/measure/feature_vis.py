"""Per-channel feature visualisation by activation maximisation (the paper's Fig. 1 and 4, computed).

For channel c of layer L, gradient ascent on an image x: [H, W, 3] in [0, 1], started from faint noise around
grey, maximises mean_{h,w} L(x)[h, w, c] (Erhan et al. 2009; Olah et al. 2017). Each step moves x by
learning_rate * P g / mean|g| and clips to [0, 1], with these regularisers:
  jitter         the image is rolled by up to `jitter` pixels before each forward pass;
  blur           every `blur_every` steps a Gaussian blur of std `blur_sigma` (reflect padding);
  decorrelation  P = (C C^T)^(1/2) scaled to top eigenvalue 1, C Lucid's square root of the ImageNet colour
                 covariance, so luminance moves fastest (P = I without).
All channels are one batch of images through the model in inference mode; the ascent is one jitted fori_loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from cl_features import workdir
from cl_features.augment.image_ops import gaussian_blur
from cl_features.measure.representation import eval_view

# Lucid (tensorflow/lucid, optvis/param/color.py): square root of the colour covariance of ImageNet.
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def colour_preconditioner() -> np.ndarray:
    """P = (C C^T)^(1/2) / lambda_max: [3, 3] symmetric positive definite, top eigenvalue 1 (C: the Lucid matrix)."""
    w, v = np.linalg.eigh(COLOR_CORRELATION_SQRT @ COLOR_CORRELATION_SQRT.T)
    p = (v * np.sqrt(np.maximum(w, 0.0))) @ v.T
    return p / np.sqrt(w.max())


def jitter_image(img, shift):
    """img: [H, W, C] rolled by shift = (dy, dx) (ints, may be traced), as np.roll(img, shift, axis=(0, 1))."""
    return jnp.roll(img, (shift[0], shift[1]), axis=(0, 1))


def blur_image(img, sigma: float):
    """img: [H, W, C] Gaussian-blurred with std sigma, kernel 2 * ceil(2 sigma) + 1 taps, reflect padding."""
    size = 2 * int(np.ceil(2.0 * sigma)) + 1
    if size > min(img.shape[0], img.shape[1]) * 2 - 1:
        raise ValueError(f"blur_sigma={sigma} needs a kernel of {size} taps, too big for {img.shape[:2]} images")
    return gaussian_blur(img, sigma, size, "reflect")


class VisResult(NamedTuple):
    """images: [C, H, W, 3] float32 in [0, 1], one per channel; activation / activation_init: [C] the channel's
    spatially averaged activation on its final image and on the starting noise."""

    images: np.ndarray
    activation: np.ndarray
    activation_init: np.ndarray


def _check(layer, channels, size, steps, learning_rate, jitter, blur_every, blur_sigma, init_std):
    if not isinstance(layer, str) or not layer:
        raise ValueError(
            f"layer must be a layer name (a key of the model's intermediates, or 'features'); got {layer!r}"
        )
    ch = np.asarray(channels)
    if ch.ndim != 1 or ch.size < 1 or not np.issubdtype(ch.dtype, np.integer) or np.any(ch < 0):
        raise ValueError(f"channels must be a non-empty list of ints >= 0; got {channels!r}")
    for name, v, lo in (("size", size, 4), ("steps", steps, 0), ("jitter", jitter, 0), ("blur_every", blur_every, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}; got {v!r}")
    if jitter >= size:
        raise ValueError(f"jitter must be < size={size}; got {jitter}")
    for name, v in (("learning_rate", learning_rate), ("blur_sigma", blur_sigma), ("init_std", init_std)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a number > 0; got {v!r}")
    return ch.astype(np.int32)


def visualise_channels(
    model: nnx.Module,
    layer: str,
    channels: Sequence[int],
    *,
    key,
    size: int = 32,
    steps: int = 256,
    learning_rate: float = 0.05,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    decorrelate: bool = True,
    init_std: float = 0.2,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
) -> VisResult:
    """Activation maximisation of `channels` of `layer` (see the module docstring for the regularisers).

    model: called as model(x, return_intermediates=True) -> (features [B, d], {layer: [B, h, w, c]}); layer
    'features' means the representation itself. preprocess maps images in [0, 1] to the model's input (e.g.
    per-channel normalisation). Start: 0.5 + init_std * N(0, 1) from `key`, clipped; jitter shifts from
    fold_in(key, step). blur_every=0 turns the blur off, jitter=0 the jitter. Same key, same images.
    """
    ch = _check(layer, channels, size, steps, learning_rate, jitter, blur_every, blur_sigma, init_std)
    preprocess = preprocess or (lambda v: v)
    graphdef, state = nnx.split(eval_view(model))
    precond = jnp.asarray(colour_preconditioner() if decorrelate else np.eye(3), jnp.float32)

    def activations(state, x):  # x: [C, H, W, 3] -> [C] each image's own channel, spatially averaged
        feats, inter = nnx.merge(graphdef, state)(preprocess(x), return_intermediates=True)
        act = feats[:, None, None, :] if layer == "features" else inter.get(layer)
        if act is None:
            raise ValueError(f"layer must be 'features' or one of {sorted(inter)}; got {layer!r}")
        if int(ch.max()) >= act.shape[-1]:
            raise ValueError(f"channels must be < {act.shape[-1]} (the width of {layer!r}); got max {int(ch.max())}")
        onehot = jax.nn.one_hot(jnp.asarray(ch), act.shape[-1], dtype=jnp.float32)  # [C, c]
        return jnp.einsum("bhwc,bc->b", act.astype(jnp.float32), onehot) / (act.shape[1] * act.shape[2])

    def objective(x, state, shifts):
        rolled = jax.vmap(jitter_image)(x, shifts)
        return jnp.sum(activations(state, rolled))

    grad_fn = jax.grad(objective)
    k_init, k_steps = jax.random.split(key)

    @jax.jit
    def run(state):
        x0 = jnp.clip(0.5 + init_std * jax.random.normal(k_init, (len(ch), size, size, 3)), 0.0, 1.0)

        def step(i, x):
            if jitter > 0:
                shifts = jax.random.randint(jax.random.fold_in(k_steps, i), (len(ch), 2), -jitter, jitter + 1)
            else:
                shifts = jnp.zeros((len(ch), 2), jnp.int32)
            g = grad_fn(x, state, shifts)
            g = g / (jnp.mean(jnp.abs(g), axis=(1, 2, 3), keepdims=True) + 1e-12)
            x = jnp.clip(x + learning_rate * (g @ precond.T), 0.0, 1.0)
            if blur_every > 0:
                blurred = jax.vmap(lambda im: blur_image(im, blur_sigma))(x)
                x = jnp.where((i + 1) % blur_every == 0, blurred, x)
            return x

        x = jax.lax.fori_loop(0, steps, step, x0)
        return x, activations(state, x), activations(state, x0)

    images, act, act0 = jax.device_get(run(state))
    return VisResult(np.asarray(images, np.float32), np.asarray(act, np.float64), np.asarray(act0, np.float64))


def grid_figure(
    images: Mapping[str, np.ndarray],
    path: str,
    *,
    channels: Sequence[int] | None = None,
    title: str | None = None,
    values: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """One row per model (images: {name: [C, H, W, 3] in [0, 1]}, same C), one column per channel; PNG.

    values: {name: [C]} numbers printed under the tiles (e.g. the activation reached; 0 marks a channel the
    ascent could not switch on from its start, whose tile stays grey).
    """
    if not images:
        raise ValueError("images must hold at least one {model name: [C, H, W, 3]} entry")
    counts = {name: np.asarray(v).shape for name, v in images.items()}
    n_ch = {s[0] for s in counts.values()}
    if len(n_ch) != 1 or any(len(s) != 4 or s[-1] != 3 for s in counts.values()):
        raise ValueError(f"every entry must be [C, H, W, 3] with the same C; got {counts}")
    n_ch = n_ch.pop()
    labels = list(channels) if channels is not None else list(range(n_ch))
    rows = len(images)
    fig = Figure(figsize=(1.1 * n_ch + 1.4, 1.3 * rows + 0.5))
    axes = fig.subplots(rows, n_ch, squeeze=False)
    for r, (name, imgs) in enumerate(images.items()):
        for c in range(n_ch):
            ax = axes[r, c]
            ax.imshow(np.clip(np.asarray(imgs[c]), 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"ch {labels[c]}", fontsize=7)
            if values is not None and name in values:
                ax.set_xlabel(f"{float(values[name][c]):.2g}", fontsize=6, labelpad=1)
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    workdir.savefig(fig, path, dpi=110)
