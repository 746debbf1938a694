"""Results as JSON files (numpy values become numbers and lists; NaN stays NaN) and logs as JSON lines."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cl_features import workdir


def _default(v: Any) -> Any:
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def dump(obj: Any, path: str, *, sort_keys: bool = True) -> None:
    """Writes obj to path (local or remote), indented, replacing the file whole (`workdir.write_text`)."""
    workdir.write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=_default, allow_nan=True))


def load(path: str) -> Any:
    """The JSON value of the file at path (local or remote)."""
    return json.loads(workdir.path(path).read_text())


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in workdir.path(path).read_text().splitlines() if line.strip()]
