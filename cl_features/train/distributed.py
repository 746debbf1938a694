"""Multi-host start: `initialize_from_flags()` at the top of a main, before any other JAX call.

--distributed=off: one process; on: always `jax.distributed.initialize` (Cloud TPU); auto (default): when a
setting is given (flag or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID) or srun / mpirun started
several tasks. jax fills in the rest under SLURM, Open MPI and Cloud TPU; elsewhere all three are needed.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

from absl import flags

ENV = {k: f"JAX_{k.upper()}" for k in ("coordinator_address", "num_processes", "process_id")}  # env fallbacks
TASK_COUNTS = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE")  # set by srun / mpirun for each task they start


class DistributedInfo(NamedTuple):
    process_index: int
    process_count: int
    initialized: bool  # whether jax.distributed runs


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """--distributed, --coordinator_address, --num_processes, --process_id, --local_device_ids (once)."""
    if "distributed" in flag_values:
        return
    kw = {"flag_values": flag_values}
    flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"], "Multi-host start (module docstring).", **kw)
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0; else $JAX_COORDINATOR_ADDRESS.", **kw)
    flags.DEFINE_integer("num_processes", None, f"Process count; else ${ENV['num_processes']}.", lower_bound=1, **kw)
    flags.DEFINE_integer("process_id", None, f"This process's id; else ${ENV['process_id']}.", lower_bound=0, **kw)
    flags.DEFINE_list("local_device_ids", None, "Local device ids this process uses, e.g. 0,1 (optional).", **kw)
    ok = lambda ids: ids is None or all(x.strip().isdigit() for x in ids)
    flags.register_validator("local_device_ids", ok, "must be a comma-separated list of ints >= 0", **kw)


def _int(name: str, text) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def initialize_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> DistributedInfo:
    """Starts jax.distributed as --distributed says; a second call does nothing. Raises ValueError (one line
    naming the field) for a bad or partial setting; jax's RuntimeError if another JAX call came first."""
    import jax  # here: defining the flags imports no JAX

    mode, env = flag_values["distributed"].value, os.environ
    if mode != "off" and not jax.distributed.is_initialized():
        given = {k: flag_values[k].value for k in ENV}
        for k, var in ENV.items():
            if given[k] is None and env.get(var):
                given[k] = env[var] if k == "coordinator_address" else _int(f"{k} (${var})", env[var])
        address, n, i = given.values()
        if address is not None and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}", address):
            raise ValueError(f"coordinator_address must be 'host:port', got {address!r}")
        if (n is not None and n < 1) or (i is not None and (i < 0 or (n is not None and i >= n))):
            raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got {n} and {i}")
        tasks = any(_int(v, env[v]) > 1 for v in TASK_COUNTS if env.get(v))
        missing = [f"{k} (--{k} or ${ENV[k]})" for k, v in given.items() if v is None]
        if 0 < len(missing) < 3 and not tasks:
            raise ValueError(f"partial distributed settings: missing {', '.join(missing)}; give all three")
        if mode == "on" or tasks or not missing:
            ids = flag_values["local_device_ids"].value
            jax.distributed.initialize(**given, local_device_ids=None if ids is None else [int(x) for x in ids])
    return DistributedInfo(jax.process_index(), jax.process_count(), jax.distributed.is_initialized())


def log_once(msg: str) -> None:
    """Prints `msg` on process 0 only."""
    import jax

    if jax.process_index() == 0:
        print(msg, flush=True)
