"""The SimCLR image augmentations as config: every op's fields, the named sets, the rules. Pure Python.

Configs import this module (it needs ml_collections only); `cl_features.augment.image_ops` runs the ops.
Ops in pipeline order: crop (random resized) -> flip -> color_jitter (p) -> grayscale (p) -> blur (p) ->
solarize (p). Named sets, each adding ops to the one before: none, crop, crop_flip, crop_flip_color (+ colour
jitter and grayscale), simclr (+ blur); and each op alone (SINGLE_OPS; `crop` alone is the named set).
Colour strength 0.5 is SimCLR's CIFAR value (1.0 for ImageNet).
"""

from __future__ import annotations

import ml_collections

from cl_features.config_checks import is_num, require

NAMED_SETS = ("none", "crop", "crop_flip", "crop_flip_color", "simclr")
SINGLE_OPS = ("flip", "color_jitter", "grayscale", "blur")
VIEW_SETS = NAMED_SETS + SINGLE_OPS  # what named_set accepts
BLUR_PADDINGS = ("constant", "reflect")
# Every op with SimCLR's CIFAR values, all switched off (the `none` set).
DEFAULTS = {
    "crop": {"enabled": False, "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "antialias": True},
    "flip": {"enabled": False, "prob": 0.5},
    "color_jitter": {
        "enabled": False,
        "strength": 0.5,
        "brightness": 0.8,
        "contrast": 0.8,
        "saturation": 0.8,
        "hue": 0.2,
        "prob": 0.8,
        "random_order": True,
    },
    "grayscale": {"enabled": False, "prob": 0.2},
    "blur": {"enabled": False, "prob": 0.5, "sigma": (0.1, 2.0), "kernel_frac": 0.1, "padding": "constant"},
    "solarize": {"enabled": False, "prob": 0.0, "threshold": 0.5},
}
# The ops each named set switches on.
_SET_OPS = {
    "none": (),
    "crop": ("crop",),
    "crop_flip": ("crop", "flip"),
    "crop_flip_color": ("crop", "flip", "color_jitter", "grayscale"),
    "simclr": ("crop", "flip", "color_jitter", "grayscale", "blur"),
    **{op: (op,) for op in SINGLE_OPS},
}


def named_set(name: str) -> ml_collections.ConfigDict:
    """The augmentation config called `name` (one of VIEW_SETS: a named set or one op alone)."""
    if name not in VIEW_SETS:
        raise ValueError(f"augmentation set must be one of {VIEW_SETS}, got {name!r}")
    cfg = ml_collections.ConfigDict(DEFAULTS)
    for op in _SET_OPS[name]:
        cfg[op].enabled = True
    return cfg


def config_fields(set_name: str = "simclr", **overrides) -> ml_collections.ConfigDict:
    """`config.augment`: a named set plus per-op overrides, every override None (= the set's value).

    Fields `set` and `<op>.<field>` for every op field, so `--config.augment.set=crop
    --config.augment.crop.scale="(0.2,1.0)"` works on the command line. `overrides`: dotted names with values,
    e.g. `**{"color_jitter.strength": 1.0}`.
    """
    c = ml_collections.ConfigDict({"set": set_name})
    for op, fields in DEFAULTS.items():
        c[op] = {f: ml_collections.config_dict.placeholder(type(v)) for f, v in fields.items()}
    for dotted, value in overrides.items():
        op, field = dotted.split(".")
        c[op][field] = value
    return c


def resolve(augment: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """named_set(augment.set) with every non-None override of `config_fields` applied; validated."""
    require(augment.set in NAMED_SETS, "augment.set", f"one of {NAMED_SETS}", augment.set)
    cfg = named_set(augment.set)
    for op in DEFAULTS:
        for field, value in augment[op].items():
            if value is not None:
                cfg[op][field] = tuple(value) if isinstance(value, list) else value
    validate(cfg)
    return cfg


def _pair(x, low_ok, high_ok=lambda hi: True) -> bool:
    return (
        isinstance(x, tuple | list)
        and len(x) == 2
        and all(is_num(v) for v in x)
        and low_ok(x[0])
        and x[0] <= x[1]
        and high_ok(x[1])
    )


def _exactly(what: str, kind: str, allowed, got) -> None:
    missing, unknown = [k for k in allowed if k not in got], [k for k in got if k not in allowed]
    if missing or unknown:
        raise ValueError(f"{what} must have exactly the {kind} {tuple(allowed)}; missing {missing}, unknown {unknown}")


def validate(cfg) -> dict:
    """Checks an augmentation config (ConfigDict or plain dict); returns it as a plain nested dict.

    Raises ValueError naming the first bad field (`config.augment.<op>.<field>`) and what is allowed.
    """
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else {k: dict(v) for k, v in dict(cfg).items()}
    _exactly("augment", "ops", DEFAULTS, d)
    for op, defaults in DEFAULTS.items():
        _exactly(f"augment.{op}", "fields", defaults, d[op])
        for field, default in defaults.items():
            if isinstance(default, bool):
                require(isinstance(d[op][field], bool), f"augment.{op}.{field}", "a bool", d[op][field])
        if "prob" in defaults:
            p = d[op]["prob"]
            require(is_num(p) and 0 <= p <= 1, f"augment.{op}.prob", "a number in [0, 1]", p)
    c, j, b = d["crop"], d["color_jitter"], d["blur"]
    positive = lambda v: v > 0  # noqa: E731
    require(
        _pair(c["scale"], positive, lambda v: v <= 1),
        "augment.crop.scale",
        "(lo, hi) with 0 < lo <= hi <= 1",
        c["scale"],
    )
    require(_pair(c["ratio"], positive), "augment.crop.ratio", "(lo, hi) with 0 < lo <= hi", c["ratio"])
    s = j["strength"]
    for f in ("strength", "brightness", "contrast", "saturation", "hue"):
        require(is_num(j[f]) and j[f] >= 0, f"augment.color_jitter.{f}", "a number >= 0", j[f])
    for f, most in (("contrast", 1), ("saturation", 1), ("hue", 0.5)):
        require(
            j[f] * s <= most, f"augment.color_jitter.{f}", f"at most {most} after multiplying by strength={s}", j[f]
        )
    require(_pair(b["sigma"], positive), "augment.blur.sigma", "(lo, hi) with 0 < lo <= hi", b["sigma"])
    k = b["kernel_frac"]
    require(is_num(k) and 0 <= k <= 1, "augment.blur.kernel_frac", "a number in [0, 1]", k)
    require(b["padding"] in BLUR_PADDINGS, "augment.blur.padding", f"one of {BLUR_PADDINGS}", b["padding"])
    t = d["solarize"]["threshold"]
    require(is_num(t) and 0 <= t <= 1, "augment.solarize.threshold", "a number in [0, 1]", t)
    return d
