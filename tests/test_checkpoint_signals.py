"""Real signals: a training subprocess SIGKILLed at random steps, or SIGTERMed, resumes bitwise equal."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = pathlib.Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "_synthetic_child.py"
CONFIG = {
    "data.d": 8,
    "data.d1": 32,
    "model.width": 16,
    "train.batch_size": 32,
    "train.schedule": "constant",
    "train.steps": 100,
    "train.steps_per_call": 10,
    "train.log_every": 20,
    "checkpoint.every": 20,
    "checkpoint.max_to_keep": 2,
    "measure.num_samples": 256,
    "measure.probe_tasks": 2,
    "arms": "complementary_mask,none",
}
CLI = [f"--config.{k}={v}" for k, v in CONFIG.items()]
BOUNDARIES = 2 * 100 // 10  # step boundaries over both arms


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
    """A persistent XLA cache shared by the children: each compiles the same step functions."""
    return str(tmp_path_factory.mktemp("xla_cache"))


def run_child(workdir, cache, fault=None, extra=(), timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "CLF_"))}
    env.update(
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    if fault:
        env["CLF_FAULT"] = fault
    return subprocess.run(
        [sys.executable, str(CHILD), f"--workdir={workdir}", *CLI, *extra],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def outputs(workdir):
    summary = json.loads((workdir / "summary.json").read_text())
    for arm in summary["arms"].values():
        arm.pop("seconds")
    weights = dict(np.load(workdir / "weights.npz"))
    metrics = {arm: (workdir / arm / "metrics.jsonl").read_text() for arm in ("complementary_mask", "none")}
    return summary, weights, metrics


@pytest.fixture(scope="module")
def reference_cli(tmp_path_factory, xla_cache):
    work = tmp_path_factory.mktemp("reference_cli")
    proc = run_child(work, xla_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"workdir": work, "outputs": outputs(work)}


def _assert_same(work, reference_cli):
    summary, weights, metrics = outputs(work)
    ref_summary, ref_weights, ref_metrics = reference_cli["outputs"]
    assert summary == ref_summary
    assert weights.keys() == ref_weights.keys()
    for k in weights:
        np.testing.assert_array_equal(weights[k], ref_weights[k], err_msg=k)
    assert metrics == ref_metrics


# Seeded kill points: one right after a save started (a checkpoint is being written when the kill lands),
# one at a random other boundary.
_rng = random.Random(1234)
KILL_AT = [2 * _rng.randrange(1, BOUNDARIES // 2), 2 * _rng.randrange(1, BOUNDARIES // 2) + 1]


@pytest.mark.parametrize("boundary", KILL_AT)
def test_sigkill_at_a_random_step_then_restart_is_bitwise_equal(tmp_path, xla_cache, reference_cli, boundary):
    killed = run_child(tmp_path, xla_cache, fault=f"kill:{boundary}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "FAULT kill" in killed.stdout and not (tmp_path / "summary.json").exists()
    half_written = sorted(str(p) for p in tmp_path.glob("*/checkpoints/*.orbax-checkpoint-tmp*"))
    resumed = run_child(tmp_path, xla_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step" in resumed.stdout
    for path in half_written:  # the kill landed while a save was being written
        assert f"ignoring half-written checkpoint {path}" in resumed.stdout
    _assert_same(tmp_path, reference_cli)


def test_sigterm_saves_the_next_step_and_exits_zero(tmp_path, xla_cache, reference_cli):
    # Boundary 13 is step 30 of the second arm ('none'): the handler's save lands at step 40 (next boundary).
    term = run_child(tmp_path, xla_cache, fault="term:13")
    assert term.returncode == 0, term.stderr[-3000:]
    out = term.stdout + term.stderr
    ck = tmp_path / "none" / "checkpoints"
    assert f"preempted: saved step 40 in {ck}. Resume with the same command:" in out
    assert f"{CHILD} --workdir={tmp_path}" in out
    assert sorted(os.listdir(ck)) == ["20", "40"]
    assert (tmp_path / "complementary_mask" / "results.json").exists() and not (tmp_path / "summary.json").exists()
    resumed = run_child(tmp_path, xla_cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[complementary_mask] finished earlier" in resumed.stdout
    assert f"resuming from step 40 ({ck}/40)" in resumed.stdout
    _assert_same(tmp_path, reference_cli)


def test_cli_refuses_a_config_that_changes_the_run_in_one_line(xla_cache, reference_cli):
    work = reference_cli["workdir"]
    proc = run_child(work, xla_cache, extra=["--config.seed=3", "--config.train.batch_size=16"])
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: refusing to resume {work / 'complementary_mask'}")
    assert "changes the run in seed, train.batch_size (seed: 0 -> 3; train.batch_size: 32 -> 16)" in err[0]
    _assert_same(work, reference_cli)  # nothing was changed
