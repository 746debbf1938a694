"""What made a run, recorded in its workdir as run_info.json: kind (which report draws it, experiments/report.py),
config and the START_FIELDS (code version, JAX and devices, command, start time). A resumed run rewrites them and
keeps each earlier start's START_FIELDS in `previous_starts`. Only process 0 writes.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any

import jax

import cl_features
from cl_features import workdir as workdir_lib

FILENAME = "run_info.json"
# The fields that describe one start of a run (kept per start when a run is resumed).
START_FIELDS = (
    "package_version",
    "git_commit",
    "git_dirty",
    "jax_version",
    "backend",
    "devices",
    "device_count",
    "process_count",
    "python",
    "command",
    "started",
)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(cl_features.__file__))


def package_version() -> str:
    """The installed distribution's version, else cl_features.__version__ (a checkout on sys.path)."""
    try:
        return importlib.metadata.version("cl_features")
    except importlib.metadata.PackageNotFoundError:
        return cl_features.__version__


def _git(args: list[str], cwd: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(package_dir: str = _PACKAGE_DIR) -> tuple[str, bool | None]:
    """(commit, dirty: tracked files differ from it) of the checkout the package was imported from, where its
    __init__.py is tracked there (not a copy installed in some repository's virtualenv); else ('unknown', None)."""
    top = _git(["rev-parse", "--show-toplevel"], package_dir)
    if not top:
        return "unknown", None
    init = os.path.relpath(os.path.join(package_dir, "__init__.py"), top)
    if _git(["ls-files", "--error-unmatch", init], top) is None:
        return "unknown", None
    commit = _git(["rev-parse", "HEAD"], top)
    if not commit:
        return "unknown", None
    status = _git(["status", "--porcelain", "--untracked-files=no"], top)
    return commit, (bool(status) if status is not None else None)


def environment(argv: list[str] | None = None) -> dict[str, Any]:
    """The START_FIELDS of this process: code version, JAX and its devices, command line, UTC start time."""
    commit, dirty = git_state()
    devices = jax.devices()
    return {
        "package_version": package_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "python": platform.python_version(),
        "command": list(sys.argv if argv is None else argv),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def read_run_info(workdir: str) -> dict | None:
    """The workdir's run_info.json, or None when there is none."""
    path = workdir_lib.path(workdir) / FILENAME
    return json.loads(path.read_text()) if path.exists() else None


def write_run_info(workdir: str, config: Any, *, kind: str, argv: list[str] | None = None) -> dict | None:
    """Records kind, config (ConfigDict or dict) and environment() in <workdir>/run_info.json.

    On a workdir that already has one, the earlier starts move to `previous_starts`. Returns the record
    written, or None on processes other than 0 (which write nothing).
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty string naming the run's report, got {kind!r}")
    if jax.process_index() != 0:
        return None
    config_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    info = {"kind": kind, "config": config_dict, **environment(argv)}
    old = read_run_info(workdir)
    if old is not None and old.get("kind", kind) != kind:
        raise ValueError(f"workdir {workdir!r} holds a {old['kind']!r} run; a {kind!r} run needs another workdir")
    if old is not None:
        previous = old.get("previous_starts", [])
        info["previous_starts"] = previous + [{k: old[k] for k in START_FIELDS if k in old}]
    workdir_lib.path(workdir).mkdir(parents=True, exist_ok=True)
    workdir_lib.write_text(
        workdir_lib.path(workdir) / FILENAME, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n"
    )
    return info
