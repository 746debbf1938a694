"""Multi-host JAX start-up: one call that initialises `jax.distributed` when the run spans processes.

Call `maybe_initialize` (or `initialize_from_flags`) at the very top of an experiment's main, before any
other JAX call (`jax.devices()`, creating an array, `jax.jit`, ...): `jax.distributed.initialize` must run
before the XLA backend starts. Calling it later raises a RuntimeError that says so.

Where settings come from, first match wins:
  1. arguments / absl flags: `--coordinator_address`, `--num_processes`, `--process_id`, `--local_device_ids`;
  2. environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (JAX_LOCAL_DEVICE_IDS is read by
     JAX itself);
  3. JAX's own cluster auto-detection (jax 0.10, `jax._src.clusters`), which fills whatever is still unset:
     Open MPI (`mpirun`: OMPI_MCA_orte_hnp_uri), SLURM (inside `srun`: SLURM_JOB_ID, SLURM_STEP_NODELIST,
     SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID; one GPU per task via SLURM_LOCALID; port from
     JAX_COORDINATOR_PORT or the job id), Cloud TPU VMs / pod slices (GCE metadata server, or GKE's
     TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES; multislice via MEGASCALE_*), and Kubernetes (needs the
     `kubernetes` package; not used to decide `auto`).

Modes (`--distributed`):
  off:  never initialise; one process.
  auto: initialise when the run looks multi-process: any setting of (1) or (2) is given, SLURM or Open MPI
        report more than one task, or this is a Cloud TPU VM (on a single-host VM that is a harmless
        one-process initialisation).
  on:   always initialise; it is an error if neither settings nor a detectable cluster exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
from absl import flags

MODES = ("auto", "on", "off")
ENV_COORDINATOR_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
_OMPI_URI = "OMPI_MCA_orte_hnp_uri"
_TPU_HOST_LISTS = ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$")


class DistributedInfo(NamedTuple):
    """Where this process sits in the run. `initialized`: whether jax.distributed is running."""

    process_index: int
    process_count: int
    initialized: bool


class Cluster(NamedTuple):
    """A cluster JAX can auto-detect. `multi_process`: whether it reports more than one process."""

    name: str
    multi_process: bool


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines --distributed, --coordinator_address, --num_processes, --process_id, --local_device_ids.

    Idempotent: a second call (e.g. from another experiment module) defines nothing.
    """
    if "distributed" in flag_values:
        return
    flags.DEFINE_enum(
        "distributed",
        "auto",
        list(MODES),
        "Multi-host initialisation: auto (when the environment looks multi-process), on, off.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        f"host:port of process 0's coordinator. Falls back to ${ENV_COORDINATOR_ADDRESS}.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_processes",
        None,
        f"Number of processes. Falls back to ${ENV_NUM_PROCESSES}.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        f"This process's id in [0, num_processes). Falls back to ${ENV_PROCESS_ID}.",
        lower_bound=0,
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "local_device_ids",
        None,
        "Comma-separated local device ids this process uses (e.g. one GPU per process). Optional.",
        flag_values=flag_values,
    )


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> DistributedInfo:
    """`maybe_initialize` with the values of the flags from `define_flags` (after absl has parsed them)."""
    ids = flag_values["local_device_ids"].value
    return maybe_initialize(
        mode=flag_values["distributed"].value,
        coordinator_address=flag_values["coordinator_address"].value,
        num_processes=flag_values["num_processes"].value,
        process_id=flag_values["process_id"].value,
        local_device_ids=None if ids is None else [_parse_int("local_device_ids", i) for i in ids],
    )


def detect_cluster(environ: Mapping[str, str], on_cloud_tpu_vm: bool = False) -> Cluster | None:
    """The cluster JAX's auto-detection would pick from `environ`, in JAX's order; None if none applies.

    `on_cloud_tpu_vm`: whether JAX found TPU chips and libtpu at import (see `_on_cloud_tpu_vm`).
    """
    if _OMPI_URI in environ:
        return Cluster("ompi", _int_env(environ, "OMPI_COMM_WORLD_SIZE", 1) > 1)
    if all(v in environ for v in _SLURM_VARS):
        return Cluster("slurm", _int_env(environ, "SLURM_NTASKS", 1) > 1)
    if on_cloud_tpu_vm:
        hosts = next((environ[v] for v in _TPU_HOST_LISTS if v in environ), None)
        if hosts is not None:  # GKE: the worker list is in the environment.
            multi = len(hosts.split(",")) > 1 or _int_env(environ, "MEGASCALE_NUM_SLICES", 1) > 1
            return Cluster("tpu", multi)
        # GCE TPU VM: the worker list lives on the metadata server; JAX reads it during initialisation.
        return Cluster("tpu", True)
    return None


def resolve_settings(
    *,
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    environ: Mapping[str, str] | None = None,
    on_cloud_tpu_vm: bool = False,
) -> dict | None:
    """Keyword arguments for `jax.distributed.initialize`, or None when this run should not initialise.

    Pure (reads only `environ`, default `os.environ`). Arguments override JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID. Values left None are for JAX's auto-detection to fill.

    Raises:
      ValueError: unknown `mode`; a malformed value (naming the field); `mode='on'` with nothing to go on;
        or partial settings (e.g. num_processes without process_id) where no cluster auto-detection applies.
    """
    if mode not in MODES:
        raise ValueError(f"distributed mode must be one of {MODES}, got {mode!r}")
    environ = os.environ if environ is None else environ
    if mode == "off":
        return None

    if coordinator_address is None and environ.get(ENV_COORDINATOR_ADDRESS):
        coordinator_address = environ[ENV_COORDINATOR_ADDRESS]
    if num_processes is None and environ.get(ENV_NUM_PROCESSES):
        num_processes = _parse_int(f"num_processes (${ENV_NUM_PROCESSES})", environ[ENV_NUM_PROCESSES])
    if process_id is None and environ.get(ENV_PROCESS_ID):
        process_id = _parse_int(f"process_id (${ENV_PROCESS_ID})", environ[ENV_PROCESS_ID])
    _validate(coordinator_address, num_processes, process_id, local_device_ids)

    explicit = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    cluster = detect_cluster(environ, on_cloud_tpu_vm)
    any_explicit = any(v is not None for v in explicit.values())
    if not any_explicit and not (cluster and (cluster.multi_process or mode == "on")):
        if mode == "on":
            raise ValueError(
                "distributed=on but there is nothing to initialise from: set coordinator_address, "
                "num_processes and process_id (flags --coordinator_address/--num_processes/--process_id or env "
                f"{ENV_COORDINATOR_ADDRESS}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID}), or run under SLURM (srun), "
                "Open MPI (mpirun) or on a Cloud TPU VM"
            )
        return None
    if cluster is None:
        missing = [k for k, v in explicit.items() if v is None]
        if missing:
            env = {
                "coordinator_address": ENV_COORDINATOR_ADDRESS,
                "num_processes": ENV_NUM_PROCESSES,
                "process_id": ENV_PROCESS_ID,
            }
            hint = ", ".join(f"{k} (flag --{k} or env {env[k]})" for k in missing)
            raise ValueError(
                f"partial distributed settings: missing {hint}; no SLURM/Open MPI/Cloud TPU environment was "
                "detected to fill them in. Give all of coordinator_address, num_processes and process_id."
            )
    return dict(explicit, local_device_ids=None if local_device_ids is None else list(local_device_ids))


def maybe_initialize(
    *,
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> DistributedInfo:
    """Initialises `jax.distributed` once if the run is multi-process (see the module docstring).

    Must be called before any other JAX call. Arguments override the env vars JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID; what is still unset JAX fills in under SLURM, Open MPI or a
    Cloud TPU VM. A second call does not initialise again; it returns the current state.

    Args:
      mode: 'auto' | 'on' | 'off'.
      coordinator_address: 'host:port' of process 0.
      num_processes: total number of processes (>= 1).
      process_id: this process's id, 0 <= process_id < num_processes.
      local_device_ids: local devices this process uses (e.g. [SLURM_LOCALID] for one GPU per process).

    Returns:
      DistributedInfo(process_index, process_count, initialized).

    Raises:
      ValueError: bad mode or values, or partial settings (names the missing field).
      RuntimeError: initialisation is needed but the JAX backend has already started.
    """
    if mode not in MODES:
        raise ValueError(f"distributed mode must be one of {MODES}, got {mode!r}")
    if jax.distributed.is_initialized():
        return _info(initialized=True)
    kwargs = resolve_settings(
        mode=mode,
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        on_cloud_tpu_vm=_on_cloud_tpu_vm(),
    )
    if kwargs is None:
        return _info(initialized=False)
    if _backend_started():
        raise RuntimeError(
            "maybe_initialize must be called before any other JAX call: the JAX backend has already started "
            "(something called jax.devices(), made an array or ran a computation first). Move "
            "maybe_initialize / initialize_from_flags to the top of main."
        )
    jax.distributed.initialize(**kwargs)
    return _info(initialized=True)


def is_main_process() -> bool:
    """Whether this is process 0 (the one that writes logs, checkpoints' metadata and reports)."""
    return jax.process_index() == 0


def log_once(msg: str) -> None:
    """Prints `msg` on process 0 only."""
    if is_main_process():
        print(msg, flush=True)


def _info(initialized: bool) -> DistributedInfo:
    return DistributedInfo(jax.process_index(), jax.process_count(), initialized)


def _validate(coordinator_address, num_processes, process_id, local_device_ids) -> None:
    if coordinator_address is not None:
        m = _ADDRESS.match(coordinator_address)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(
                f"coordinator_address must be 'host:port' with port in 1..65535, got {coordinator_address!r}"
            )
    if num_processes is not None and (not _is_int(num_processes) or num_processes < 1):
        raise ValueError(f"num_processes must be an int >= 1, got {num_processes!r}")
    if process_id is not None and (not _is_int(process_id) or process_id < 0):
        raise ValueError(f"process_id must be an int >= 0, got {process_id!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, got {process_id}")
    if local_device_ids is not None and (
        isinstance(local_device_ids, (str, int))
        or not local_device_ids
        or not all(_is_int(i) and i >= 0 for i in local_device_ids)
    ):
        raise ValueError(f"local_device_ids must be a non-empty list of ints >= 0, got {local_device_ids!r}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _parse_int(field: str, text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"{field} must be an integer, got {text!r}") from None


def _int_env(environ: Mapping[str, str], name: str, default: int) -> int:
    return _parse_int(name, environ[name]) if environ.get(name) else default


def _on_cloud_tpu_vm() -> bool:
    # Set by jax at import (cloud_tpu_init) when libtpu and TPU chips are present; the same signal JAX's
    # own TPU cluster detection uses. Private, so read defensively.
    try:
        from jax._src import cloud_tpu_init
    except ImportError:
        return False
    return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:
        return False  # jax.distributed.initialize still raises its own RuntimeError.
    return bool(getattr(xla_bridge, "backends_are_initialized", lambda: False)())
