"""A sweep's runs and their compiled groups, from the config's `sweep.*` fields (pure Python, no JAX).

A run is the synthetic config with a few fields set: its arm (augmentation), objective.name, the values of the
sweep's axes `sweep.x` and `sweep.y` (`"field=v1,v2,..."`) and a seed (`seed + k`, k < `sweep.seeds`). Fields in
TRACED enter the compiled program as arrays, so runs that differ only in them share one program; every other field
(the arm, objective.name, shapes such as data.d1 or model.width, counts such as model.bias_ramp_steps) is static:
one compiled group per combination of static values.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import ml_collections

from cl_features.config_checks import check, get, require, split_list
from cl_features.synthetic import arms

# Fields the synthetic driver uses only in arithmetic: they may be arrays inside the compiled program.
TRACED = (
    "seed",
    "data.sigma",
    "data.sparsity",
    "model.bias_c",
    "model.init_scale",
    "augment.keep_prob",
    "augment.noise_std",
    "objective.temperature",
    "objective.weight_decay",
    "train.learning_rate",
    "train.momentum",
)
# Fields an axis may not sweep: set by sweep.seeds / arms / sweep.objectives, or not part of a run's maths.
NOT_AXES = tuple(dict.fromkeys(("seed", "objective.name", "sweep") + arms.RESUME_MUTABLE_FIELDS))


class Group(NamedTuple):
    """Runs compiled together: the static values they share and, per run, its index and traced values."""

    name: str  # directory name under <workdir>/groups
    arm: str
    static: dict  # field -> value (objective.name and the static axes)
    runs: list[int]  # indices into the sweep's run list
    traced: list[dict]  # per run: field -> value of the TRACED fields it sets (seed at least)


class Sweep(NamedTuple):
    axes: dict  # "x", "y" -> (field, values) or None
    panels: list[tuple[str, str]]  # (arm, objective.name) in order
    runs: list[dict]  # per run: {"arm", "objective.name", <x field>, <y field>, "seed"}
    groups: list[Group]


def _value(token: str):
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    return token


def parse_axis(c: ml_collections.ConfigDict, name: str) -> tuple[str, list] | None:
    """sweep.<name> = "field=v1,v2,..." -> (field, [values]); "" -> None (y only)."""
    text = c.sweep[name]
    allowed = "'field=v1,v2,...' over a field of the synthetic config, not one of " + ", ".join(NOT_AXES)
    if name == "y" and text == "":
        return None
    field, _, values = text.partition("=") if isinstance(text, str) else ("", "", "")
    field = field.strip()
    vals = [_value(v.strip()) for v in values.split(",") if v.strip()]
    try:
        get(c, field)
        known = True
    except (KeyError, AttributeError, TypeError):
        known = False
    bad_field = any(field == f or field.startswith(f + ".") for f in NOT_AXES)
    ok = known and not bad_field and vals and len({repr(v) for v in vals}) == len(vals)
    require(ok, f"sweep.{name}", allowed + (" (or '' for none)" if name == "y" else ""), text)
    return field, vals


def run_config(c: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """The validated, resolved config of one run: c with `values` set (its "arm" as the only arm)."""
    r = ml_collections.ConfigDict(c.to_dict())
    del r["sweep"]
    fields = {k: v for k, v in values.items() if k != "arm"}
    try:
        r.update_from_flattened_dict(fields)
    except TypeError:
        field = next(k for k, v in fields.items() if type(v) is not type(get(r, k)))
        raise ValueError(f"config.{field} must be {type(get(r, field)).__name__}, got {fields[field]!r}") from None
    r.arms = values["arm"]
    return arms.validate(r)


def expand(c: ml_collections.ConfigDict) -> Sweep:
    """Every run of the sweep (each validated by the synthetic driver's rules) and the groups that compile them."""
    check(c, "sweep.seeds", lambda v: v >= 1, "an int >= 1")
    check(c, "sweep.vmap_runs", lambda v: v >= 0, "an int >= 0")
    x, y = parse_axis(c, "x"), parse_axis(c, "y")
    require(y is None or y[0] != x[0], "sweep.y", f"a field other than sweep.x's ({x[0]})", c.sweep.y)
    objectives = split_list(c, "sweep.objectives", allow_empty=True) or [c.objective.name]
    panels = [(a, o) for o in objectives for a in split_list(c, "arms")]
    axes = [x] + ([y] if y else [])
    runs, grouped = [], {}
    for (arm, objective), *point, k in itertools.product(panels, *[v for _, v in reversed(axes)], range(c.sweep.seeds)):
        values = {"arm": arm, "objective.name": objective, **dict(zip([f for f, _ in reversed(axes)], point))}
        values["seed"] = c.seed + k
        run_config(c, values)  # every run checked before anything is compiled
        static = {f: v for f, v in values.items() if f not in TRACED}
        grouped.setdefault(tuple(static.items()), []).append(len(runs))
        runs.append(values)
    groups = []
    for key, members in grouped.items():
        static = dict(key)
        arm = static.pop("arm")
        label = "_".join([arm] + [f"{v}" if f == "objective.name" else f"{f}={v}" for f, v in static.items()])
        traced = [{f: v for f, v in runs[i].items() if f in TRACED} for i in members]
        groups.append(Group(f"{len(groups):02d}_{label}", arm, static, members, traced))
    return Sweep({"x": x, "y": y}, panels, runs, groups)
