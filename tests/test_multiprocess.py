"""Two processes on localhost (jax.distributed, CPU collectives over gloo, 2 devices each) running
experiments.synthetic give the summary of one process with 4 devices; only process 0 writes; SIGTERM to one
process stops both at the next step boundary with a saved step, and the same command resumes.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "_synthetic_child.py"  # experiments.synthetic's main, with CLF_FAULT injection
CONFIG = {
    "data.d": 8,
    "data.d1": 32,
    "model.width": 16,
    "train.batch_size": 32,
    "train.schedule": "constant",
    "train.steps_per_call": 10,
    "train.log_every": 20,
    "checkpoint.every": 50,
    "measure.num_samples": 256,
    "measure.probe_tasks": 2,
    "arms": "complementary_mask",
}
ARMS = ("complementary_mask",)
_CACHE = {}  # a persistent XLA cache shared by the runs (set by the fixture)
# Gloo all-reduces sum in another order than one process does: float32 rounding only.
RTOL, ATOL = 1e-5, 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_", "XLA_", "SLURM_", "OMPI_", "TPU_", "MEGASCALE_"))
    }
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PYTHONPATH=str(ROOT),
        **_CACHE,
        **extra,
    )
    return env


def _argv(workdir, steps: int, child: bool) -> list[str]:
    over = dict(CONFIG, **{"train.steps": steps})
    main = [str(CHILD)] if child else ["-m", "experiments.synthetic"]
    return [sys.executable, *main, f"--workdir={workdir}", *[f"--config.{k}={v}" for k, v in over.items()]]


def run_processes(workdir, steps: int, count: int, fault0: str | None = None, timeout: float = 150) -> list[str]:
    """`count` processes of one run (count=1: a plain single process with 4 devices); process 0 gets the
    CLF_FAULT `fault0`. Returns their logs."""
    address = f"127.0.0.1:{_free_port()}"
    procs = []
    for i in range(count):
        env = (
            _env(4 // count)
            if count == 1
            else _env(4 // count, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES=str(count), JAX_PROCESS_ID=str(i))
        )
        if fault0 and i == 0:
            env["CLF_FAULT"] = fault0
        log = open(workdir.parent / f"{workdir.name}.log{i}", "w")
        procs.append(
            (
                subprocess.Popen(
                    _argv(workdir, steps, child=fault0 is not None),
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    deadline = time.monotonic() + timeout
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p, _ in procs]
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    logs = [(workdir.parent / f"{workdir.name}.log{i}").read_text() for i in range(count)]
    assert codes == [0] * count, "\n----\n".join(log[-3000:] for log in logs)
    return logs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multiprocess")
    _CACHE.update(
        JAX_COMPILATION_CACHE_DIR=str(tmp / "xla_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    one = tmp / "one"
    run_processes(one, steps=100, count=1)
    two = tmp / "two"
    # SIGTERM to process 0 alone after step 30: the next boundary (step 40) all-gathers the flag, both
    # processes save there and exit 0.
    first = run_processes(two, steps=100, count=2, fault0="term:3")
    metrics_after_first = (two / "complementary_mask" / "metrics.jsonl").read_text()
    checkpoints_after_first = sorted(os.listdir(two / "complementary_mask" / "checkpoints"))
    second = run_processes(two, steps=100, count=2)  # the same command resumes at step 40
    return {
        "one": one,
        "two": two,
        "first": first,
        "second": second,
        "metrics_after_first": metrics_after_first,
        "checkpoints_after_first": checkpoints_after_first,
    }


def _summary(workdir):
    s = json.loads((workdir / "summary.json").read_text())
    return {arm: {k: v for k, v in r.items() if k != "seconds"} for arm, r in s["arms"].items()}, s["config"]


def test_two_processes_give_the_one_process_summary(runs):
    one, cfg_one = _summary(runs["one"])
    two, cfg_two = _summary(runs["two"])
    assert cfg_one == cfg_two and one.keys() == two.keys() == set(ARMS)
    for arm in ARMS:
        assert one[arm].keys() == two[arm].keys()
        for k in one[arm]:
            np.testing.assert_allclose(two[arm][k], one[arm][k], rtol=RTOL, atol=ATOL, err_msg=f"{arm}.{k}")
    w1, w2 = np.load(runs["one"] / "weights.npz"), np.load(runs["two"] / "weights.npz")
    for arm in ARMS:
        np.testing.assert_allclose(w2[f"w_{arm}"], w1[f"w_{arm}"], rtol=RTOL, atol=ATOL)
    for arm in ARMS:
        a = [json.loads(x) for x in (runs["one"] / arm / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (runs["two"] / arm / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in a] == [r["step"] for r in b] == [20, 40, 60, 80, 100]
        for ra, rb in zip(a, b):
            np.testing.assert_allclose(rb["loss"], ra["loss"], rtol=RTOL, err_msg=f"{arm} step {ra['step']}")


def _preempted_step(log: str) -> int:
    match = re.search(r"preempted: saved step (\d+) in ", log)
    assert match, log[-3000:]
    return int(match.group(1))


def test_only_process_zero_writes_and_reports(runs):
    first, second = runs["first"], runs["second"]
    stop = _preempted_step(first[0])
    assert "2 processes" in first[0] and f"[complementary_mask] step {stop - stop % 20}/100" in first[0]
    assert "2 processes" in second[0] and "[complementary_mask] step 100/100" in second[0] and "wrote " in second[0]
    for log in (first[1], second[1]):
        assert "wrote " not in log and "[complementary_mask] step" not in log and "[checkpoint]" not in log
        assert "preempted" not in log
    # One copy of each row: the first run's rows up to the preemption, then the resumed run's.
    assert [json.loads(x)["step"] for x in runs["metrics_after_first"].splitlines()] == list(range(20, stop + 1, 20))

    def written(workdir):  # TensorBoard files are named by time and pid: count them
        names = sorted(p.name for p in workdir.iterdir() if p.is_file())
        return [n for n in names if not n.startswith("events.")], sum(n.startswith("events.") for n in names)

    assert written(runs["two"]) == written(runs["one"])


def test_sigterm_to_one_process_saves_on_all_and_the_same_command_resumes(runs):
    ck = runs["two"] / "complementary_mask" / "checkpoints"
    assert "FAULT term after step 30" in runs["first"][0]
    stop = _preempted_step(runs["first"][0])
    assert stop == 40  # the boundary after the signal, on both processes
    assert f"preempted: saved step {stop} in {ck}. Resume with the same command:" in runs["first"][0]
    assert runs["checkpoints_after_first"] == ["40"]  # the preemption save (every 50 comes later)
    assert f"resuming from step {stop} ({ck / str(stop)})" in runs["second"][0]
    assert sorted(os.listdir(ck)) == ["100", "50"]  # every 50 and the last step (max_to_keep 2)
