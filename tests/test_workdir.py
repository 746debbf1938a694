"""A workdir keeps what its run wrote: a refused resume rewrites nothing (run_info.json included); one run at a
time holds it."""

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import fsspec
import jax.numpy as jnp
import pytest

from cl_features import jsonio, workdir
from cl_features.image_training import trainer
from cl_features.jsonio import read_jsonl
from cl_features.report import run_info
from cl_features.synthetic import arms
from cl_features.train import checkpoint
from cl_features.train.metrics_log import MetricsLog, truncate_jsonl
from experiments.configs import photos_simclr_tiny
from experiments.configs import synthetic as synthetic_config

ROOT = Path(__file__).resolve().parents[1]


def snapshot(workdir) -> dict[str, str]:
    """{relative path: sha256 of its bytes (or 'dir')} of everything under workdir."""
    out = {}
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, workdir)
            out[rel] = "dir" if os.path.isdir(path) else hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def fake_run(run_dir, config: dict, step: int) -> None:
    """A checkpoint at `step` recording `config` (the refusal reads only the config)."""
    with checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), config=config) as ck:
        ck.save(step, {"w": jnp.zeros(2)})


def synthetic_workdir(tmp_path):
    c = arms.validate(synthetic_config.get_config())
    c.arms = "complementary_mask,none"
    run_info.write_run_info(str(tmp_path), c, kind="synthetic", argv=["first"])
    for arm in arms.arm_names(c):
        fake_run(tmp_path / arm, arms.arm_run_config(c, arm), 200)
    return c


@pytest.mark.parametrize("field,value", [("seed", 1), ("train.batch_size", 64)])
def test_a_refused_synthetic_resume_changes_nothing_in_the_workdir(tmp_path, field, value, caplog):
    c = synthetic_workdir(tmp_path)
    before = snapshot(tmp_path)
    changed = synthetic_config.get_config()
    changed.arms = c.arms
    changed.update_from_flattened_dict({field: value})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(checkpoint.ConfigMismatch, match=f"changes the run in {field}"):
        arms.run(changed, str(tmp_path), verbose=False)
    assert [r.getMessage() for r in caplog.records if f"{os.sep}orbax{os.sep}" in r.pathname] == []  # one line
    assert snapshot(tmp_path) == before
    assert json.loads((tmp_path / "run_info.json").read_text())["command"] == ["first"]


def test_a_synthetic_resume_past_train_steps_changes_nothing(tmp_path):
    c = synthetic_workdir(tmp_path)
    before = snapshot(tmp_path)
    shorter = synthetic_config.get_config()
    shorter.arms, shorter.train.steps = c.arms, 100
    with pytest.raises(ValueError, match="past the run's 100 steps"):
        arms.run(shorter, str(tmp_path), verbose=False)
    assert snapshot(tmp_path) == before


def test_a_refused_image_resume_changes_nothing_in_the_workdir(tmp_path):
    c = trainer.validate(photos_simclr_tiny.get_config())
    run_info.write_run_info(str(tmp_path), c, kind="images", argv=["first"])
    fake_run(tmp_path, c.to_dict(), 50)
    before = snapshot(tmp_path)
    changed = photos_simclr_tiny.get_config()
    changed.train.batch_size = 32
    with pytest.raises(checkpoint.ConfigMismatch, match="changes the run in train.batch_size"):
        trainer.run(changed, str(tmp_path), verbose=False)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ the workdir lock

HOLDER = """
import sys, time
from cl_features import jsonio, workdir
with workdir.lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_second_start_on_a_held_workdir_stops_naming_the_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
    work = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(work)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline() == "held\n"
        lock = json.loads((work / workdir.LOCK).read_text())
        assert (lock["host"], lock["pid"]) == (socket.gethostname(), holder.pid)
        second = subprocess.run(
            [sys.executable, "-m", "experiments.synthetic", f"--workdir={work}", "--config.arms=none"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=ROOT,
        )
        assert second.returncode == 1, second.stderr
        assert second.stderr.count("\n") == 1, second.stderr
        assert f"error: the workdir is in use by process {holder.pid} on host {socket.gethostname()}" in second.stderr
        assert sorted(os.listdir(work)) == [workdir.LOCK]  # the second start wrote nothing
    finally:
        holder.kill()
        holder.wait()
    with workdir.lock(str(work)):  # the holder is gone: its lock is taken over
        assert json.loads((work / workdir.LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of process {holder.pid}" in capsys.readouterr().out
    assert not (work / workdir.LOCK).exists()


def test_a_lock_of_another_host_is_kept_and_a_reused_process_id_is_not_the_holder(tmp_path):
    lock = tmp_path / workdir.LOCK
    lock.write_text(json.dumps({"host": "another-host", "pid": os.getpid(), "started": "earlier"}))
    with pytest.raises(workdir.Held, match=f"process {os.getpid()} on host another-host"):
        with workdir.lock(str(tmp_path)):
            pass
    assert json.loads(lock.read_text())["host"] == "another-host"
    # This host, a live process id, but started at another time than the process that holds that id now.
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_start": "-1"}))
    with workdir.lock(str(tmp_path)):
        assert json.loads(lock.read_text())["pid_start"] != "-1"


# ------------------------------------------------------------------------------------------ a bucket workdir


@pytest.fixture
def bucket(monkeypatch, tmp_path):
    """gs:// served from memory (fsspec's in-memory filesystem registered for the gs protocol): a non-local
    filesystem, reached only through etils.epath's fsspec backend. The test runs in an empty directory."""
    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem
    from fsspec.registry import _registry

    class Bucket(MemoryFileSystem):
        protocol, root_marker, store, pseudo_dirs = ("gs", "gcs"), "", {}, [""]

        @classmethod
        def _strip_protocol(cls, path):  # as gcsfs: 'gs://bucket/key' -> 'bucket/key'
            return str(path).removeprefix("gs://").removeprefix("gcs://").rstrip("/")

    for name in ("gs", "gcs"):
        fsspec.register_implementation(name, Bucket, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()
    monkeypatch.chdir(tmp_path)
    yield Bucket.store
    for name in ("gs", "gcs"):
        _registry.pop(name, None)
    backend.fsspec_backend._get_filesystem.cache_clear()
    assert list(tmp_path.iterdir()) == []  # nothing was written locally (no ./gs:/bucket/...)


def test_records_metrics_events_and_the_lock_go_through_the_path_layer_to_a_bucket(bucket):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    w = "gs://bucket/run"
    workdir.check_creatable(w)
    with workdir.lock(w):
        assert json.loads(workdir.path(w, workdir.LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(workdir.Held, match=f"process {os.getpid()} on host"):
            with workdir.lock(w):
                pass
        run_info.write_run_info(w, {"a": 1}, kind="synthetic", argv=["x"])
        assert run_info.read_run_info(w)["config"] == {"a": 1}
        metrics = f"{w}/arm/metrics.jsonl"
        with MetricsLog(metrics) as log:
            for step in (1, 2, 3):
                log.write(step, {"loss": 1.0 / step})
        assert truncate_jsonl(metrics, 2) == 2
        assert read_jsonl(metrics) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
        jsonio.dump({"x": [1, 2]}, f"{w}/results.json")
        assert json.loads(workdir.path(w, "results.json").read_text()) == {"x": [1, 2]}
    assert not workdir.path(w, workdir.LOCK).exists()
    (events,) = workdir.path(w, "arm").glob("events.out.tfevents.*")
    local = events.name  # TensorBoard's reader wants a local file: a copy of the object's bytes
    try:
        with open(local, "wb") as f:
            f.write(events.read_bytes())
        acc = EventAccumulator(local)
        acc.Reload()
        assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    finally:
        os.remove(local)
    assert sorted(bucket) == sorted(
        f"bucket/run/{name}" for name in ("run_info.json", "results.json", "arm/metrics.jsonl", f"arm/{events.name}")
    )


def test_a_bucket_metrics_log_rewrites_its_object_once_whatever_the_number_of_rows(bucket, monkeypatch):
    fs, writes = fsspec.get_filesystem_class("gs"), []
    original = fs._open

    def counted_open(self, p, mode="rb", *args, **kwargs):  # every object write opens it for writing
        if "w" in mode:
            writes.append(p)
        return original(self, p, mode, *args, **kwargs)

    monkeypatch.setattr(fs, "_open", counted_open)
    metrics, logged = "gs://bucket/run/metrics.jsonl", 0
    for rows in (10, 100):
        writes.clear()
        logged += rows
        with MetricsLog(metrics, tensorboard=False) as log:
            for step in range(rows):
                log.write(step, {"loss": float(step)})
            assert writes == []  # not yet written: within the first seconds
            log.flush()
            assert writes == ["bucket/run/metrics.jsonl"] and len(read_jsonl(metrics)) == logged
        assert writes == ["bucket/run/metrics.jsonl"]  # nothing new since the flush: close writes nothing
    assert [r["step"] for r in read_jsonl(metrics)] == list(range(10)) + list(range(100))


def test_a_workdir_the_path_layer_cannot_reach_stops_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--workdir=ftp://host/run: ftp:// is not supported; use a local"):
        workdir.check_creatable("ftp://host/run")
    assert list(tmp_path.iterdir()) == []
