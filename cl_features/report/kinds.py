"""A run's report redrawn from its workdir alone, by the run's kind (the "kind" field of run_info.json).

REPORTS maps a kind to `report(workdir, info) -> Report` (info: run_info.json as a dict, or None), as a function
or as a "module:function" string imported only when that kind is reported. A workdir without run_info.json is
read as DEFAULT_KIND.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from cl_features import workdir as workdir_lib
from cl_features.report import run_info

DEFAULT_KIND = "synthetic"


@dataclasses.dataclass
class Report:
    """written: {name: path} of every file (re)written; missing: one line per output not drawn, and why."""

    written: dict[str, str] = dataclasses.field(default_factory=dict)
    missing: list[str] = dataclasses.field(default_factory=list)


REPORTS: dict[str, Callable[[str, dict | None], Report] | str] = {
    "synthetic": "cl_features.report.synthetic:report",
    "decoupling": "cl_features.report.decoupling:report",
    "sweep": "cl_features.report.phase:report",
    "images": "cl_features.report.images:report",
}


def resolve(fn) -> Callable[[str, dict | None], Report]:
    """A REPORTS entry as the function it names."""
    if isinstance(fn, str):
        module, _, attr = fn.partition(":")
        return getattr(importlib.import_module(module), attr)
    return fn


def make_report(workdir: str, kind: str | None = None) -> Report:
    """Runs the report of `kind` (default: from run_info.json, else DEFAULT_KIND) on `workdir`."""
    if not workdir or not workdir_lib.path(workdir).is_dir():
        raise ValueError(f"workdir must be an existing directory, got {workdir!r}")
    info = run_info.read_run_info(workdir)
    kind = kind or (info or {}).get("kind") or DEFAULT_KIND
    if kind not in REPORTS:
        raise ValueError(f"kind must be one of {sorted(REPORTS)}, got {kind!r}")
    return resolve(REPORTS[kind])(workdir, info)
