"""Shared config validation: one-line errors that name the field and what is allowed."""

from __future__ import annotations

import numpy as np


def require(ok: bool, field: str, allowed: str, value) -> None:
    """Raises ValueError("config.<field> must be <allowed>, got <value>") unless ok."""
    if not ok:
        raise ValueError(f"config.{field} must be {allowed}, got {value!r}")


def is_int(v) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
