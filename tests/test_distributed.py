"""Tests for cl_features.train.distributed: settings resolution, misuse, and a real two-process run."""

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

SLURM_2 = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_NODELIST": "node[1-2]",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
}


@pytest.fixture
def clean_env(monkeypatch):
    """No cluster or JAX_* variables in os.environ."""
    for name in list(os.environ):
        if name.startswith(_CLUSTER_PREFIXES) and name != "JAX_PLATFORMS":
            monkeypatch.delenv(name)


# --- resolve_settings / detect_cluster: pure functions of their arguments and an environ ---------------


def test_off_never_initialises_even_with_settings():
    env = {"JAX_COORDINATOR_ADDRESS": "h:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert distributed.resolve_settings(mode="off", environ=env) is None


def test_auto_single_process_environment_does_not_initialise():
    assert distributed.resolve_settings(mode="auto", environ={}) is None
    one_task = dict(SLURM_2, SLURM_NTASKS="1", SLURM_PROCID="0")
    assert distributed.resolve_settings(mode="auto", environ=one_task) is None


def test_env_fallbacks_and_flags_override_env():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed.resolve_settings(environ=env) == {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 4,
        "process_id": 3,
        "local_device_ids": None,
    }
    got = distributed.resolve_settings(coordinator_address="[::1]:99", process_id=1, local_device_ids=(2,), environ=env)
    assert got == {"coordinator_address": "[::1]:99", "num_processes": 4, "process_id": 1, "local_device_ids": [2]}


def test_auto_under_multi_task_slurm_leaves_the_rest_to_jax():
    assert distributed.resolve_settings(environ=SLURM_2) == {
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
        "local_device_ids": None,
    }
    # What launch/slurm.sh does: the coordinator from the environment, SLURM fills the rest.
    env = dict(SLURM_2, JAX_COORDINATOR_ADDRESS="node1:4242")
    assert distributed.resolve_settings(environ=env)["coordinator_address"] == "node1:4242"


@pytest.mark.parametrize(
    "given,missing",
    [
        ({"num_processes": 2}, ["coordinator_address", "process_id"]),
        ({"coordinator_address": "h:1", "num_processes": 2}, ["process_id"]),
        ({"coordinator_address": "h:1", "process_id": 0}, ["num_processes"]),
    ],
)
def test_partial_settings_name_the_missing_field(given, missing):
    with pytest.raises(ValueError, match="partial distributed settings") as e:
        distributed.resolve_settings(environ={}, **given)
    named = {f for f in ("coordinator_address", "num_processes", "process_id") if f"{f} (flag" in str(e.value)}
    assert named == set(missing)


def test_on_without_anything_raises():
    with pytest.raises(ValueError, match="distributed=on"):
        distributed.resolve_settings(mode="on", environ={})


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mode": "yes"}, "mode"),
        ({"coordinator_address": "localhost"}, "coordinator_address"),
        ({"coordinator_address": "h:70000"}, "coordinator_address"),
        ({"num_processes": 0}, "num_processes"),
        ({"num_processes": 2, "process_id": 2}, "process_id"),
        ({"process_id": -1}, "process_id"),
        ({"local_device_ids": [0, -1]}, "local_device_ids"),
        ({"environ": {"JAX_NUM_PROCESSES": "two"}}, "JAX_NUM_PROCESSES"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    kwargs.setdefault("environ", {})
    with pytest.raises(ValueError, match=field):
        distributed.resolve_settings(**kwargs)


def test_detect_cluster():
    detect = distributed.detect_cluster
    assert detect({}) is None
    assert detect(SLURM_2) == ("slurm", True)
    assert detect({k: v for k, v in SLURM_2.items() if k != "SLURM_STEP_NODELIST"}) is None  # not in srun
    assert detect({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "1"}) == ("ompi", False)
    assert detect({"TPU_WORKER_HOSTNAMES": "a,b"}) is None  # not a TPU VM
    assert detect({"TPU_WORKER_HOSTNAMES": "a,b"}, on_cloud_tpu_vm=True) == ("tpu", True)
    assert detect({"TPU_WORKER_HOSTNAMES": "a"}, on_cloud_tpu_vm=True) == ("tpu", False)
    assert detect({}, on_cloud_tpu_vm=True) == ("tpu", True)  # GCE: JAX asks the metadata server


# --- maybe_initialize / flags in this process (never initialises) --------------------------------------


def test_maybe_initialize_off_returns_one_process(clean_env):
    info = distributed.maybe_initialize(mode="off")
    assert info == distributed.DistributedInfo(process_index=0, process_count=1, initialized=False)
    assert not jax.distributed.is_initialized()
    assert distributed.is_main_process()


def test_maybe_initialize_auto_without_cluster_is_single_process(clean_env):
    assert distributed.maybe_initialize() == (0, 1, False)
    assert not jax.distributed.is_initialized()


def test_maybe_initialize_partial_raises(clean_env, monkeypatch):
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="process_id"):
        distributed.maybe_initialize()
    assert not jax.distributed.is_initialized()


def test_maybe_initialize_after_a_jax_call_is_detected(clean_env):
    jax.devices()  # starts the backend
    with pytest.raises(RuntimeError, match="before any other JAX call"):
        distributed.maybe_initialize(mode="on", coordinator_address="127.0.0.1:1", num_processes=2, process_id=0)
    assert not jax.distributed.is_initialized()


def test_log_once_prints_on_process_zero(capsys):
    distributed.log_once("hello")
    assert capsys.readouterr().out == "hello\n"


def test_define_flags_is_idempotent_and_feeds_initialize(clean_env):
    fv = flags.FlagValues()
    distributed.define_flags(fv)
    distributed.define_flags(fv)
    fv(["prog", "--distributed=off", "--num_processes=2", "--local_device_ids=0,1"])
    assert fv.num_processes == 2 and fv.local_device_ids == ["0", "1"] and fv.process_id is None
    assert distributed.initialize_from_flags(fv) == (0, 1, False)
    bad = flags.FlagValues()
    distributed.define_flags(bad)
    with pytest.raises(flags.IllegalFlagValueError):
        bad(["prog", "--distributed=maybe"])


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
      again = distributed.maybe_initialize(mode="on")
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
                   "is_main": distributed.is_main_process(), "sum": np.asarray(total).tolist(),
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
                "SLURM_PROCID": str(i),
                "SLURM_LOCALID": str(i),
                "JAX_COORDINATOR_ADDRESS": address,
            },
        ),
    )
    _check_two(results, logs)
