"""What a trained encoder's layers do on real images (docs/theory.md, section 7), for any module called as
`model(x, return_intermediates=True) -> (features [N, d], {layer: [N, h, w, c]})`:

  activation density   a unit (channel, position) fires when its activation exceeds `threshold`; per image the
                       fraction of units firing, per channel the fraction of (image, position) pairs it fires on
                       ('dense_units': >= dense_unit, 'dead_units': never).
  channel correlation  Pearson over positive pairs of each channel's mean-pooled activation in the two views.
  dense reliance       held-out ridge R^2 from the final features to per-image statistics (`statistic_reliance`).

Reductions over positions run inside the jitted forward, so only [N, c] arrays per layer reach the host;
everything returned is float64 NumPy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cl_features.measure import correlation, ridge
from cl_features.measure.image_stats import check_positive_int


@dataclasses.dataclass(frozen=True)
class EncoderOutputs:
    """An encoder's outputs on N images, reduced over positions.

    features: [N, d] the representation; pooled: {layer: [N, c]} mean activation per channel;
    active: {layer: [N, c]} fraction of positions where the channel's activation > threshold.
    Layers are in network order (`layer_order`).
    """

    features: np.ndarray
    pooled: dict[str, np.ndarray]
    active: dict[str, np.ndarray]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.pooled)


def eval_view(model: nnx.Module) -> nnx.Module:
    """The model in inference mode (BatchNorm on running statistics, dropout off), sharing its arrays."""
    return nnx.view(model, raise_if_not_found=False, use_running_average=True, deterministic=True)


def layer_order(names) -> list[str]:
    """'stem', then 'stage1', 'stage2', ... (numerically), then 'final', then any other name alphabetically."""

    def key(name: str):
        if name.startswith("stage") and name[5:].isdigit():
            return (1, int(name[5:]), name)
        return ({"stem": 0, "final": 2}.get(name, 3), 0, name)

    return sorted(names, key=key)


def outputs_fn(
    model: nnx.Module,
    *,
    batch_size: int = 256,
    preprocess: Callable[[jax.Array], jax.Array] | None = None,
    threshold: float = 0.0,
) -> Callable[[np.ndarray], EncoderOutputs]:
    """images -> EncoderOutputs of `model` in inference mode (see `eval_view`), compiled once for every call.

    images: [N, H, W, 3] uint8 (scaled to [0, 1]) or float. `preprocess` (e.g. per-channel normalisation, a
    resize) maps a float32 batch [B, H, W, 3] to the model's input inside the jitted forward. Images go in
    batches of `batch_size`, the last one padded (one compiled shape per image size); padded rows are dropped.
    The model's arrays are read at each call, so the function follows further training of the same model.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number; got {threshold}")
    preprocess = preprocess or (lambda v: v)
    graphdef = nnx.graphdef(eval_view(model))

    @jax.jit
    def forward(state, batch):
        m = nnx.merge(graphdef, state)
        batch = batch.astype(jnp.float32) / 255.0 if batch.dtype == jnp.uint8 else batch.astype(jnp.float32)
        out = m(preprocess(batch), return_intermediates=True)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping)):
            raise ValueError("model(x, return_intermediates=True) must return (features, {layer: activation})")
        feats, inter = out
        pooled = {k: jnp.mean(v.astype(jnp.float32), axis=(1, 2)) for k, v in inter.items()}
        active = {k: jnp.mean((v > threshold).astype(jnp.float32), axis=(1, 2)) for k, v in inter.items()}
        return feats.astype(jnp.float32), pooled, active

    def run(images) -> EncoderOutputs:
        x = np.asarray(images)
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] < 1:
            raise ValueError(f"images must be [N >= 1, H, W, 3]; got shape {x.shape}")
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"images must be uint8 or float; got dtype {x.dtype}")
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        state = nnx.state(model)
        parts = []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start : start + batch_size]
            m = chunk.shape[0]
            if m < batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - m, axis=0)])
            out = jax.device_get(forward(state, jnp.asarray(chunk)))
            parts.append(jax.tree.map(lambda a, m=m: np.asarray(a, np.float64)[:m], out))
        feats, pooled, active = jax.tree.map(lambda *a: np.concatenate(a), *parts)
        layers = layer_order(pooled)
        return EncoderOutputs(feats, {k: pooled[k] for k in layers}, {k: active[k] for k in layers})

    return run


def activation_density(active, *, dense_unit: float = 0.9) -> dict[str, float]:
    """active: [N, c] fraction of positions where each channel fires, per image (EncoderOutputs.active).

    Returns {'density': mean fraction of units firing (over images, positions, channels),
    'image_density_std': std over images of the fraction of units firing per image,
    'dense_units': fraction of channels that fire on >= dense_unit of the (image, position) pairs,
    'dead_units': fraction of channels that never fire}.
    """
    a = np.asarray(active, np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"active must be [N >= 1, c >= 1]; got shape {a.shape}")
    if np.any(a < 0) or np.any(a > 1) or not np.all(np.isfinite(a)):
        raise ValueError("active must hold fractions in [0, 1]")
    if not 0 < dense_unit <= 1:
        raise ValueError(f"dense_unit must be in (0, 1]; got {dense_unit}")
    per_image = a.mean(axis=1)  # [N]
    per_unit = a.mean(axis=0)  # [c]
    return {
        "density": float(per_image.mean()),
        "image_density_std": float(per_image.std()),
        "dense_units": float(np.mean(per_unit >= dense_unit)),
        "dead_units": float(np.mean(per_unit == 0)),
    }


L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def statistic_reliance(features, statistics: Mapping[str, np.ndarray], *, l2=L2_GRID, **split) -> dict[str, float]:
    """{name: ridge.heldout_r2(features: [N, d], statistics[name]: [N, k], l2=l2, **split)}, split (train_frac,
    seed) the same for every statistic."""
    return {name: ridge.heldout_r2(features, s, l2=l2, **split) for name, s in statistics.items()}


def layer_table(
    clean: EncoderOutputs, views: Mapping[str, tuple[EncoderOutputs, EncoderOutputs]], *, dense_unit: float = 0.9
) -> dict[str, dict]:
    """Per layer (and 'features', the representation): density on the clean images and, for each named view
    pair, the mean / median of the per-channel cross-view correlation.

    Returns {layer: {'channels': c, 'density', 'image_density_std', 'dense_units', 'dead_units',
    'corr/<view set>': mean, 'corr_median/<view set>': median}}; 'features' has no density entries.
    """
    table: dict[str, dict] = {}
    for layer in clean.layers:
        row = {"channels": int(clean.pooled[layer].shape[1])}
        row.update(activation_density(clean.active[layer], dense_unit=dense_unit))
        table[layer] = row
    table["features"] = {"channels": int(clean.features.shape[1])}
    for name, (a, b) in views.items():
        for layer in table:
            x1, x2 = (a.features, b.features) if layer == "features" else (a.pooled[layer], b.pooled[layer])
            s = correlation.summary(correlation.cross_view_correlation(x1, x2))
            table[layer][f"corr/{name}"] = s["mean"]
            table[layer][f"corr_median/{name}"] = s["median"]
    return table
