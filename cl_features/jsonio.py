"""Results as JSON files: numpy scalars and arrays become numbers and lists, tuples lists; NaN stays NaN.
Logs as JSON lines, one object a line."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cl_features import workdir


def default(v: Any) -> Any:
    """`json.dump(default=...)` for what results hold besides Python types."""
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def dump(obj: Any, path: str, *, sort_keys: bool = True) -> None:
    """Writes obj to path (local or remote: cl_features.workdir), indented; replaces the file whole (locally
    through a temporary file and a rename: `workdir.write_text`)."""
    workdir.write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=default, allow_nan=True))


def load(path: str) -> Any:
    """The JSON value of the file at path (local or remote)."""
    return json.loads(workdir.path(path).read_text())


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped)."""
    return [json.loads(line) for line in workdir.path(path).read_text().splitlines() if line.strip()]
