"""Config validation: one-line errors `config.<field> must be <allowed>, got <value>`.

Ranges, choices and relations between fields (ml_collections refuses wrong types); a rule whose test raises
TypeError counts as broken.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any


def require(ok: bool, field: str, allowed: str, value) -> None:
    """Raises ValueError("config.<field> must be <allowed>, got <value>") unless ok."""
    if not ok:
        raise ValueError(f"config.{field} must be {allowed}, got {value!r}")


def get(c, field: str) -> Any:
    """c['a']['b'] for field 'a.b'."""
    for name in field.split("."):
        c = c[name]
    return c


def check(c, field: str, ok: Callable[[Any], bool], allowed: str) -> None:
    """require(ok(value of field), ...)."""
    value = get(c, field)
    try:
        good = bool(ok(value))
    except TypeError:
        good = False
    require(good, field, allowed, value)


def one_of(c, field: str, options) -> None:
    check(c, field, lambda v: v in options, f"one of {tuple(options)}")


def is_num(v) -> bool:
    """A finite real number (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def as_tuple(v) -> tuple:
    """A number or a list of numbers -> a tuple of them (for fields that take either)."""
    return tuple(v) if isinstance(v, tuple | list) else (v,)


def at_least(c, low, *fields: str) -> None:
    for f in fields:
        check(c, f, lambda v: v >= low, f">= {low}")


def positive(c, *fields: str) -> None:
    for f in fields:
        check(c, f, lambda v: v > 0, "> 0")


def fraction(c, *fields: str) -> None:
    """Each field in (0, 1]."""
    for f in fields:
        check(c, f, lambda v: 0 < v <= 1, "in (0, 1]")


def split_list(c, field: str, allowed=None, *, allow_empty: bool = False) -> list[str]:
    """The names of a comma-separated field ('a, b' -> ['a', 'b']), checked: distinct, each in `allowed`."""
    value = get(c, field)
    names = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else []
    ok = isinstance(value, str) and (allow_empty or names) and len(set(names)) == len(names)
    ok = ok and all(allowed is None or n in allowed for n in names)
    what = f"names from {tuple(allowed)}" if allowed is not None else "names"
    require(ok, field, f"a {'' if allow_empty else 'non-empty '}comma list of distinct {what}", value)
    return names
