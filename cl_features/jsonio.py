"""Results as JSON files: numpy scalars and arrays become numbers and lists, tuples lists; NaN stays NaN.
Logs as JSON lines, one object a line."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def default(v: Any) -> Any:
    """`json.dump(default=...)` for what results hold besides Python types."""
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def dump(obj: Any, path: str, *, sort_keys: bool = True) -> None:
    """Writes obj to path, indented."""
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys, default=default, allow_nan=True)


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
