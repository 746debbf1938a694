"""The optimisation recipe of an image run (config.train): steps, warmup, peak learning rate, the optimiser.

Weight decay and LARS's trust ratio apply to kernels only (`decay_mask`) unless `train.decay_bn_and_bias`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import ml_collections

from cl_features.config_checks import at_least, check, one_of, positive
from cl_features.train import optim

LR_SCALINGS = ("linear", "sqrt", "none")


def check_fields(c: ml_collections.ConfigDict) -> None:
    at_least(c, 2, "train.batch_size")
    if c.train.steps is None:
        check(c, "train.epochs", lambda v: v > 0, "> 0 (or set train.steps)")
    positive(c, "train.base_learning_rate")
    at_least(c, 0, "train.warmup_epochs", "train.weight_decay")
    check(c, "train.momentum", lambda v: 0 <= v < 1, "in [0, 1)")
    one_of(c, "train.optimizer", optim.OPTIMIZERS)
    one_of(c, "train.learning_rate_scaling", LR_SCALINGS)
    one_of(c, "train.schedule", optim.SCHEDULES)


@dataclasses.dataclass(frozen=True)
class Schedule:
    steps: int
    warmup_steps: int
    steps_per_epoch: float
    learning_rate: float  # peak, after batch-size scaling


def learning_rate(base: float, batch_size: int, scaling: str) -> float:
    """Peak learning rate: base * batch / 256 (linear), base * sqrt(batch) (sqrt), or base (none)."""
    return {"linear": base * batch_size / 256, "sqrt": base * math.sqrt(batch_size), "none": base}[scaling]


def make_schedule(c: ml_collections.ConfigDict, num_train: int) -> Schedule:
    """Steps (train.steps, or train.epochs rounded up to a multiple of steps_per_call), warmup, peak lr."""
    t = c.train
    per_epoch = num_train / t.batch_size
    if t.steps is not None:
        steps = t.steps
    else:
        steps = max(1, math.ceil(t.epochs * per_epoch))
        steps = -(-steps // t.steps_per_call) * t.steps_per_call
    warmup = int(round(t.warmup_epochs * per_epoch))
    if t.schedule == "warmup_cosine" and warmup >= steps:
        raise ValueError(
            f"config.train.warmup_epochs={t.warmup_epochs} gives {warmup} warmup steps, not fewer than "
            f"the run's {steps} steps ({per_epoch:g} steps per epoch)"
        )
    lr = learning_rate(t.base_learning_rate, t.batch_size, t.learning_rate_scaling)
    return Schedule(steps, min(warmup, steps), per_epoch, lr)


def decay_mask(params) -> Any:
    """True for conv / linear kernels; False for BatchNorm scales and biases and every bias."""

    def is_kernel(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return bool(names) and names[-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def lr_schedule(c: ml_collections.ConfigDict, schedule: Schedule):
    """The learning rate as a function of the step (train.schedule, warmup, peak)."""
    return optim.schedule(
        learning_rate=schedule.learning_rate,
        kind=c.train.schedule,
        steps=schedule.steps,
        warmup_steps=schedule.warmup_steps,
    )


def make_optimizer(c: ml_collections.ConfigDict, schedule: Schedule):
    t = c.train
    mask = None if t.decay_bn_and_bias else decay_mask
    return optim.make_optimizer(
        name=t.optimizer,
        learning_rate=lr_schedule(c, schedule),
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        weight_decay_mask=mask,
        lars_trust_mask=mask,
    )
