"""cl_features.train.distributed: what reaches jax.distributed.initialize, misuse, and real two-process runs."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from absl import flags

from cl_features.train import distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]
_CLUSTER_PREFIXES = ("JAX_", "SLURM_", "OMPI_", "TPU_", "MEGASCALE_", "KUBERNETES_")

SLURM_2 = {  # inside `srun --ntasks=2` (what jax's SLURM detection reads, and the task count of the step)
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_NODELIST": "node[1-2]",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
}
NONE = {"coordinator_address": None, "num_processes": None, "process_id": None, "local_device_ids": None}


@pytest.fixture
def clean_env(monkeypatch):
    """No cluster or JAX_* variables in os.environ."""
    for name in list(os.environ):
        if name.startswith(_CLUSTER_PREFIXES) and name != "JAX_PLATFORMS":
            monkeypatch.delenv(name)


def start(monkeypatch, *argv, **env):
    """initialize_from_flags with these flags and env vars, jax.distributed.initialize recorded, not run.
    Returns its keyword arguments, or None when it was not called."""
    for name in list(os.environ):
        if name.startswith(_CLUSTER_PREFIXES) and name != "JAX_PLATFORMS":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    fv = flags.FlagValues()
    distributed.define_flags(fv)
    fv(["prog", *argv])
    assert distributed.initialize_from_flags(fv) == (0, 1, False)  # nothing really started here
    assert len(calls) <= 1
    return calls[0] if calls else None


# --- what initialize_from_flags passes to jax.distributed.initialize, from flags and env ---------------


def test_off_never_initialises_even_with_settings(monkeypatch):
    env = {"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert start(monkeypatch, "--distributed=off", **env) is None
    assert start(monkeypatch, "--distributed=off", **SLURM_2) is None


def test_auto_single_process_environment_does_not_initialise(monkeypatch):
    assert start(monkeypatch) is None
    assert start(monkeypatch, **dict(SLURM_2, SLURM_NTASKS="1", SLURM_STEP_NUM_TASKS="1", SLURM_PROCID="0")) is None
    assert start(monkeypatch, **{k: v for k, v in SLURM_2.items() if k != "SLURM_STEP_NUM_TASKS"}) is None  # sbatch
    assert start(monkeypatch, OMPI_COMM_WORLD_SIZE="1") is None


def test_env_fallbacks_and_flags_override_env(monkeypatch):
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert start(monkeypatch, **env) == dict(NONE, coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)
    got = start(monkeypatch, "--coordinator_address=[::1]:99", "--process_id=1", "--local_device_ids=2", **env)
    assert got == {"coordinator_address": "[::1]:99", "num_processes": 4, "process_id": 1, "local_device_ids": [2]}


def test_auto_under_multi_task_srun_or_mpirun_leaves_the_rest_to_jax(monkeypatch):
    assert start(monkeypatch, **SLURM_2) == NONE
    assert start(monkeypatch, OMPI_COMM_WORLD_SIZE="4", OMPI_MCA_orte_hnp_uri="x") == NONE
    # What launch/slurm.sh does: the coordinator from the environment, SLURM fills the rest.
    assert start(monkeypatch, JAX_COORDINATOR_ADDRESS="node1:4242", **SLURM_2)["coordinator_address"] == "node1:4242"


def test_on_initialises_with_nothing_given(monkeypatch):
    assert start(monkeypatch, "--distributed=on") == NONE  # a Cloud TPU VM: jax asks the TPU metadata


@pytest.mark.parametrize(
    "argv,missing",
    [
        (["--num_processes=2"], ["coordinator_address", "process_id"]),
        (["--coordinator_address=h:1", "--num_processes=2"], ["process_id"]),
        (["--coordinator_address=h:1", "--process_id=0"], ["num_processes"]),
    ],
)
def test_partial_settings_name_the_missing_field(monkeypatch, argv, missing):
    for mode in ("auto", "on"):
        with pytest.raises(ValueError, match="partial distributed settings") as e:
            start(monkeypatch, f"--distributed={mode}", *argv)
        assert "\n" not in str(e.value)
        named = {
            f for f in ("coordinator_address", "num_processes", "process_id") if f"{f} (--{f} or $" in str(e.value)
        }
        assert named == set(missing)


@pytest.mark.parametrize(
    "argv,env,field",
    [
        (["--coordinator_address=localhost"], {}, "coordinator_address"),
        (["--num_processes=2", "--process_id=2"], {}, "process_id"),
        ([], {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES"),
        ([], {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "-1"}, "process_id"),
        ([], {"SLURM_STEP_NUM_TASKS": "x"}, "SLURM_STEP_NUM_TASKS"),
    ],
)
def test_bad_values_name_the_field(monkeypatch, argv, env, field):
    with pytest.raises(ValueError, match=field):
        start(monkeypatch, *argv, **env)


@pytest.mark.parametrize(
    "flag", ["--distributed=maybe", "--num_processes=0", "--process_id=-1", "--local_device_ids=0,-1"]
)
def test_bad_flags_are_refused_by_absl(flag):
    fv = flags.FlagValues()
    distributed.define_flags(fv)
    with pytest.raises(flags.IllegalFlagValueError, match=flag.split("=")[0].lstrip("-")):
        fv(["prog", flag])


def test_initialising_after_a_jax_call_is_refused(clean_env):
    jax.devices()  # starts the backend
    fv = flags.FlagValues()
    distributed.define_flags(fv)
    fv(["prog", "--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=0"])
    with pytest.raises(RuntimeError, match="must be called before any JAX"):
        distributed.initialize_from_flags(fv)
    assert not jax.distributed.is_initialized()


def test_log_once_prints_on_process_zero(capsys, monkeypatch):
    distributed.log_once("hello")
    assert capsys.readouterr().out == "hello\n"
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    distributed.log_once("hello")
    assert capsys.readouterr().out == ""


def test_define_flags_is_idempotent(clean_env):
    fv = flags.FlagValues()
    distributed.define_flags(fv)
    distributed.define_flags(fv)
    fv(["prog", "--distributed=off", "--num_processes=2", "--local_device_ids=0,1"])
    assert fv.num_processes == 2 and fv.local_device_ids == ["0", "1"] and fv.process_id is None


# --- two real processes on localhost, CPU collectives over gloo -----------------------------------------

WORKER = textwrap.dedent('''
    """Builds a [8, 3] global array over both processes' devices; writes its jitted sum and gather."""
    import json
    from absl import app, flags
    from cl_features.train import distributed

    distributed.define_flags()
    distributed.define_flags()
    flags.DEFINE_string("out", None, "result JSON")

    def main(argv):
      info = distributed.initialize_from_flags()  # before any other JAX call
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import NamedSharding, PartitionSpec as P
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      again = distributed.initialize_from_flags()  # a second call starts nothing
      mesh = jax.make_mesh((jax.device_count(),), ("data",), devices=jax.devices())
      rows = 2 * jax.local_device_count()
      full = np.arange(rows * info.process_count * 3, dtype=np.float32).reshape(-1, 3) ** 1.5
      local = full[info.process_index * rows:(info.process_index + 1) * rows]
      x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
      replicated = NamedSharding(mesh, P())
      total = jax.jit(lambda a: jnp.sum(a, axis=0), out_shardings=replicated)(x)
      gathered = jax.jit(lambda a: a, out_shardings=replicated)(x)
      distributed.log_once("LOG_ONCE_MARKER")
      with open(flags.FLAGS.out, "w") as f:
        json.dump({"info": list(info), "again": list(again), "devices": jax.device_count(),
                   "local_devices": jax.local_device_count(), "shape": list(x.shape),
                   "is_main": jax.process_index() == 0, "sum": np.asarray(total).tolist(),
                   "gathered": np.asarray(gathered).tolist()}, f)

    if __name__ == "__main__":
      app.run(main)
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two(tmp_path, per_process):
    """Runs WORKER as processes 0 and 1; per_process(i) -> (extra argv, extra env). Returns results, logs."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(_CLUSTER_PREFIXES)}
    base_env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=str(ROOT))
    procs = []
    for i in range(2):
        argv, env = per_process(i)
        log = open(tmp_path / f"log{i}.txt", "w")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(script), f"--out={tmp_path / f'out{i}.json'}", *argv],
                    env={**base_env, **env},
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    deadline = time.monotonic() + 60  # both processes together
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p, _ in procs]
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    logs = [(tmp_path / f"log{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], "\n----\n".join(logs)
    return [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(2)], logs


def _check_two(results, logs):
    full = np.arange(8 * 3, dtype=np.float64).reshape(8, 3) ** 1.5  # the single-process answer
    for i, r in enumerate(results):
        assert r["info"] == [i, 2, True] and r["again"] == [i, 2, True]
        assert (r["devices"], r["local_devices"], r["shape"]) == (4, 2, [8, 3])
        assert r["is_main"] == (i == 0)
        np.testing.assert_allclose(r["sum"], full.sum(axis=0), rtol=1e-6)
        np.testing.assert_allclose(r["gathered"], full, rtol=1e-6)
    assert ["LOG_ONCE_MARKER" in log for log in logs] == [True, False]


def test_two_processes_flags_and_env(tmp_path):
    """Process 0 configured by flags (--distributed=on), process 1 by JAX_* env vars (auto)."""
    address = f"127.0.0.1:{_free_port()}"
    results, logs = _run_two(
        tmp_path,
        lambda i: (
            (["--distributed=on", f"--coordinator_address={address}", "--num_processes=2", "--process_id=0"], {})
            if i == 0
            else ([], {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"})
        ),
    )
    _check_two(results, logs)


def test_two_processes_slurm_auto_detection(tmp_path):
    """As inside launch/slurm.sh's srun: SLURM variables + JAX_COORDINATOR_ADDRESS, no flags, mode auto."""
    address = f"127.0.0.1:{_free_port()}"
    results, logs = _run_two(
        tmp_path,
        lambda i: (
            [],
            {
                "SLURM_JOB_ID": "123",
                "SLURM_STEP_NODELIST": "localhost",
                "SLURM_NTASKS": "2",
                "SLURM_STEP_NUM_TASKS": "2",
                "SLURM_PROCID": str(i),
                "SLURM_LOCALID": str(i),
                "JAX_COORDINATOR_ADDRESS": address,
            },
        ),
    )
    _check_two(results, logs)
