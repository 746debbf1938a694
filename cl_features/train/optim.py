"""Optimizers and learning-rate schedules from config (`train.*`)."""

from __future__ import annotations

import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "lars")
SCHEDULES = ("constant", "warmup_cosine", "cosine_tail")


def schedule(
    *, learning_rate: float, kind: str = "constant", steps: int = 1, warmup_steps: int = 0, decay_fraction: float = 0.25
):
    """constant (after an optional linear warm-up); warmup_cosine (to 0 at `steps`); cosine_tail: constant, then a
    cosine decay to 0 over the last `decay_fraction` of the steps (lowers the SGD noise floor at the end)."""
    if kind not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {kind!r}")
    if kind == "constant":
        if warmup_steps > 0:
            return optax.linear_schedule(0.0, learning_rate, warmup_steps)
        return learning_rate
    if kind == "cosine_tail":
        decay = max(1, int(round(decay_fraction * steps)))
        return optax.join_schedules(
            [optax.constant_schedule(learning_rate), optax.cosine_decay_schedule(learning_rate, decay)], [steps - decay]
        )
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(warmup_steps, 0), max(steps, 1))


def make_optimizer(
    *,
    name: str,
    learning_rate,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    weight_decay_mask=None,
    lars_trust_mask=None,
) -> optax.GradientTransformation:
    """name: one of OPTIMIZERS. `weight_decay` is decoupled (adamw, lars) or added to the gradient (others)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if name == "lars":
        return optax.lars(
            learning_rate,
            weight_decay=weight_decay,
            weight_decay_mask=weight_decay_mask or True,
            trust_ratio_mask=lars_trust_mask or True,
            momentum=momentum,
        )
    if name == "adamw":
        return optax.adamw(learning_rate, weight_decay=weight_decay, mask=weight_decay_mask)
    decay = [optax.add_decayed_weights(weight_decay, weight_decay_mask)] if weight_decay else []
    base = {
        "sgd": lambda: optax.sgd(learning_rate),
        "momentum": lambda: optax.sgd(learning_rate, momentum=momentum),
        "adam": lambda: optax.adam(learning_rate),
    }[name]()
    return optax.chain(*decay, base)
