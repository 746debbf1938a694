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
import numpy as np
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


# The report writers and the result files of a run against the bucket stand-in. Orbax cannot write to the
# in-memory filesystem, so the runs below have their training replaced (train_arm / train_group return fixed
# results): what is tested is every file written around the checkpoints, and each report redrawn from the bucket
# alone, byte for byte the same as from a local copy.


def _copy_out(bucket: dict, remote: str, local) -> None:
    """Every object under `remote` (gs://...) into the local directory `local` (the same relative paths)."""
    for key in list(bucket):
        if key.startswith(remote.removeprefix("gs://") + "/"):
            dst = workdir.path(local, key.removeprefix(remote.removeprefix("gs://") + "/"))
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(workdir.path("gs://" + key).read_bytes())


def _same_report(bucket: dict, remote: str, local, kind: str | None = None) -> dict:
    """Redraws the report of `remote` there and in a local copy; asserts both wrote the same bytes."""
    from cl_features.report import kinds

    _copy_out(bucket, remote, local)
    there, here = kinds.make_report(remote, kind), kinds.make_report(str(local), kind)
    assert sorted(there.written) == sorted(here.written) and there.missing == here.missing
    for name, p in there.written.items():
        assert p.startswith(remote + "/")
        assert workdir.path(p).read_bytes() == workdir.path(here.written[name]).read_bytes(), name
    return there.written


def test_the_path_layer_writes_what_matplotlib_and_numpy_write_locally(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(tmp_path / "direct.png", dpi=50)
    workdir.savefig(fig, tmp_path / "layer.png", dpi=50)
    assert (tmp_path / "layer.png").read_bytes() == (tmp_path / "direct.png").read_bytes()
    arrays = {"a": np.arange(3.0), "b/c": np.eye(2, dtype=np.int8)}
    workdir.savez(tmp_path / "x.npz", compressed=True, **arrays)
    loaded = workdir.load_npz(tmp_path / "x.npz")
    assert sorted(loaded) == sorted(arrays) and all(np.array_equal(loaded[k], arrays[k]) for k in arrays)
    assert loaded["b/c"].dtype == np.int8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct.png", "layer.png", "x.npz"]  # no .tmp left


def test_a_synthetic_run_writes_its_results_and_report_to_a_bucket(bucket, tmp_path_factory, monkeypatch):
    c = arms.validate(synthetic_config.get_config())
    c.arms, c.data.d, c.data.d1, c.model.m = "complementary_mask,none", 4, 8, 8
    rng = np.random.default_rng(0)
    result = {k: 0.5 for k in ("recovered_fraction", "span_share", "sparse_corr", "dense_corr")}
    result |= {
        "probe_accuracy": 0.9,
        "raw_probe_accuracy": 0.8,
        "final_loss": 1.0,
        "steps": c.train.steps,
        "seconds": 1.0,
    }

    def trained(c, arm, dictionary, *, workdir, **kwargs):  # what train_arm leaves: metrics rows and results.json
        with MetricsLog(f"{workdir}/{arm}/metrics.jsonl", tensorboard=False) as log:
            for step in (20, 40):
                log.write(step, {"contrastive_loss": 2.0 / step, "recovered_fraction": step / 40})
        jsonio.dump({"config": arms.arm_run_config(c, arm), "results": result}, f"{workdir}/{arm}/results.json")
        return dict(result), rng.normal(size=(c.model.m, c.data.d1)), []

    monkeypatch.setattr(arms, "train_arm", trained)
    w = "gs://bucket/run"
    summary = arms.run(c, w, verbose=False)
    assert jsonio.load(f"{w}/summary.json") == json.loads(json.dumps(summary))
    assert (
        arms.finished_results(
            f"{w}/none/results.json",
            arms.arm_run_config(c, "none"),
            c.train.steps,
            checkpoint.MUTABLE_FIELDS + ("arms",),
        )
        == result
    )
    weights = workdir.load_npz(f"{w}/weights.npz")
    assert sorted(weights) == ["dictionary", "w_complementary_mask", "w_none"]
    written = _same_report(bucket, w, tmp_path_factory.mktemp("local"))
    assert sorted(written) == ["cosines.png", "decoupling.png", "recovery.png", "summary.md"]
    assert workdir.path(w, "summary.md").read_text().splitlines()[2].startswith("| complementary_mask |")
    assert not any(k.endswith(".tmp") for k in bucket)


def test_an_unfinished_synthetic_run_in_a_bucket_gets_its_curves_and_progress(bucket, tmp_path_factory):
    w = "gs://bucket/run"
    for arm in ("b", "a"):
        workdir.write_text(
            f"{w}/{arm}/metrics.jsonl", '{"step": 10, "contrastive_loss": 1.0, "recovered_fraction": 0.5}\n'
        )
    written = _same_report(bucket, w, tmp_path_factory.mktemp("local"))
    assert sorted(written) == ["progress.md", "recovery.png"]
    assert [r.split("|")[1].strip() for r in workdir.path(w, "progress.md").read_text().splitlines()[2:]] == ["a", "b"]


def test_a_sweep_writes_sweep_json_and_its_phase_diagram_to_a_bucket(bucket, tmp_path_factory, monkeypatch):
    from cl_features.sweep import run as sweep_run
    from experiments.configs import sweep_sigma

    c = sweep_sigma.get_config()
    c.arms, c.data.d, c.data.d1, c.train.steps = "complementary_mask", 4, 8, 50
    c.sweep.x, c.sweep.y, c.sweep.seeds = "data.sigma=0.2,0.4", "", 2

    def trained(c, sweep, g, mesh, workdir, progress, checked=None):
        return [{"recovered_fraction": 0.25 * i, "probe_accuracy": 0.9, "diverged_at": 0} for i in sweep.groups[g].runs]

    monkeypatch.setattr(sweep_run, "train_group", trained)
    w = "gs://bucket/sweep"
    out = sweep_run.run(sweep_run.validate(c), w)
    assert jsonio.load(f"{w}/sweep.json") == json.loads(json.dumps(out))
    assert sorted(_same_report(bucket, w, tmp_path_factory.mktemp("local"))) == ["phase_diagram.png", "sweep.md"]
    assert "0.125 ± 0.125" in workdir.path(w, "sweep.md").read_text()


def test_a_decoupling_report_folder_is_written_to_and_redrawn_from_a_bucket(bucket, tmp_path_factory):
    from test_decoupling_images import _fake_models, _fake_table

    from cl_features.report import decoupling

    rng = np.random.default_rng(0)
    models = _fake_models()
    inputs = dict(
        model_free={"none": _fake_table(1.0, 1.0, 1.0, 1.0, 1.0), "simclr": _fake_table(0.5, 0.4, 0.7, 0.6, 0.55)},
        models=models,
        tsne_maps={m: rng.normal(size=(12, 2)) for m in models},
        tsne_labels=np.repeat(np.arange(3), 4),
        class_names=["a", "b", "c"],
        vis={m: rng.random((2, 8, 8, 3)) for m in models},
        vis_layer="stage3",
        config={"seed": 0},
    )
    w, local = "gs://bucket/report", tmp_path_factory.mktemp("local")
    paths = decoupling.write_report(w, **inputs)
    assert sorted(bucket) == sorted(p.removeprefix("gs://") for p in paths.values())  # every file, only there
    assert "- figures/tsne.png\n" in workdir.path(w, "summary.md").read_text()
    assert workdir.load_npz(paths["pictures.npz"]).keys() >= {"tsne_labels", "vis/simclr"}
    decoupling.write_report(str(local / "direct"), **inputs)
    assert workdir.path(w, "summary.md").read_text() == (local / "direct" / "summary.md").read_text()
    written = _same_report(bucket, w, local / "copy", kind="decoupling")
    assert {"summary.md", "tsne.png", "feature_vis.png", "pictures.npz"} <= set(written)


def test_an_image_run_report_is_redrawn_from_a_bucket(bucket, tmp_path_factory):
    w = "gs://bucket/images"
    run_info.write_run_info(w, {"task": "simclr"}, kind="images", argv=["x"])
    with MetricsLog(f"{w}/metrics.jsonl", tensorboard=False) as log:
        for step in (10, 20):
            log.write(step, {"loss": 1.0 / step, "knn_acc": step / 40})
    jsonio.dump(
        {"task": "simclr", "knn_acc": 0.5, "knn_acc_init": 0.1, "num_classes": 4, "steps": 20}, f"{w}/summary.json"
    )
    assert sorted(_same_report(bucket, w, tmp_path_factory.mktemp("local"))) == ["curves.png", "summary.md"]
    assert "| knn_acc | 0.1000 | 0.5000 |" in workdir.path(w, "summary.md").read_text()
