"""Which config changes a resume (or a finished run's reuse) accepts: one-line errors naming the fields."""

from __future__ import annotations

import json

from flax import traverse_util

# Fields that may change on resume: they do not change the numbers of a step.
MUTABLE_FIELDS = ("train.steps", "train.log_every", "train.steps_per_call", "train.num_devices", "checkpoint")
# Fields added after checkpoints were written without them: absent counts as this value (the older runs').
ADDED_FIELDS = {
    "objective.name": "nt_xent",
    "objective.predictor_layers": 2,
    "objective.predictor_hidden_dim": None,
    "objective.ema_momentum": 0.99,
    "objective.ema_schedule": "cosine",
}
_MISSING = object()


class ConfigMismatch(ValueError):
    """Resuming with a config that changes the meaning of the run."""


def _flat(tree: dict) -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1} after a JSON round trip (tuples -> lists)."""
    return traverse_util.flatten_dict(json.loads(json.dumps(tree)), sep=".")


def config_diff(saved: dict, current: dict, mutable: tuple[str, ...] = MUTABLE_FIELDS) -> list[str]:
    """Dotted fields that differ or are on one side only (ADDED_FIELDS: absent is the old value), not `mutable` ones."""
    a, b = {**ADDED_FIELDS, **_flat(saved)}, {**ADDED_FIELDS, **_flat(current)}
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))
    return [k for k in changed if not any(k == m or k.startswith(m + ".") for m in mutable)]


def describe_diff(saved: dict, current: dict, fields: list[str]) -> str:
    """'field: old -> new; ...' for `fields` (a value missing on one side is shown as (absent))."""
    a, b = _flat(saved), _flat(current)
    show = lambda v: "(absent)" if v is _MISSING else json.dumps(v)
    return "; ".join(f"{k}: {show(a.get(k, _MISSING))} -> {show(b.get(k, _MISSING))}" for k in fields)


def check_config(saved: dict, current: dict, mutable: tuple[str, ...], path: str) -> None:
    """Raises ConfigMismatch (one line naming the fields) if resuming `path` (saved with `saved`) changes the run."""
    if fields := config_diff(saved, current, mutable):
        raise ConfigMismatch(
            f"refusing to resume {path}: the config changes the run in {', '.join(fields)} "
            f"({describe_diff(saved, current, fields)}); use another workdir or restore these values "
            f"(allowed to change: {', '.join(mutable)})"
        )
