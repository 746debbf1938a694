"""Checkpoints in-process: exact resume, preemption, corrupt fallback, config guard, NaN stop, data-iterator state.

Real SIGKILL/SIGTERM in a subprocess: test_checkpoint_signals.py.
"""

import glob
import os
import pathlib
import signal

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx, traverse_util

from cl_features.jsonio import read_jsonl
from cl_features.synthetic import arms, task
from cl_features.train import checkpoint, config_guard, loop, resumable
from cl_features.train import mesh as mesh_lib
from experiments.configs import synthetic as synthetic_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARM = "complementary_mask"
TINY = {
    "data.d": 8,
    "data.d1": 32,
    "model.width": 16,
    "train.batch_size": 32,
    "train.schedule": "constant",
    "train.steps": 120,
    "train.steps_per_call": 10,
    "train.log_every": 20,
    "checkpoint.every": 40,
    "checkpoint.max_to_keep": 3,
    "measure.num_samples": 256,
    "measure.probe_tasks": 2,
    "arms": ARM,
}


def tiny_config(**over):
    c = synthetic_config.get_config()
    for dotted, value in {**TINY, **{k.replace("__", "."): v for k, v in over.items()}}.items():
        *path, last = dotted.split(".")
        node = c
        for p in path:
            node = node[p]
        node[last] = value
    return arms.validate(c)


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for this module: its tests rebuild the same step functions many times."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    before = {n: getattr(jax.config, n) for n in names}
    cc.reset_cache()
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for n, v in before.items():
        jax.config.update(n, v)
    cc.reset_cache()


@pytest.fixture(scope="module")
def mesh():
    return mesh_lib.make_mesh(1)


def train(c, workdir, mesh):
    dictionary = task.make_dictionary(c)
    return arms.train_arm(c, ARM, dictionary, mesh=mesh, workdir=str(workdir), verbose=False)


def rows(workdir):
    return read_jsonl(os.path.join(workdir, ARM, "metrics.jsonl"))


def no_seconds(results):
    return {k: v for k, v in results.items() if k != "seconds"}


def ckpt_dir(workdir):
    return os.path.join(workdir, ARM, "checkpoints")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mesh):
    """An uninterrupted 120-step run: (results, weights, metrics rows)."""
    work = tmp_path_factory.mktemp("reference")
    results, w, history = train(tiny_config(), work, mesh)
    assert [r["step"] for r in history] == [20, 40, 60, 80, 100, 120]
    return results, w, rows(work)


def sigterm_self():
    """A real SIGTERM to this process, handled by the open Checkpointer (never the default action: exit)."""
    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no Checkpointer handler installed"
    os.kill(os.getpid(), signal.SIGTERM)


def preempt_at(monkeypatch, step):
    """Sends this process a SIGTERM just before the boundary at `step`."""
    original = checkpoint.Checkpointer.maybe_save

    def maybe_save(self, s, state, **kwargs):
        if s == step:
            sigterm_self()
        return original(self, s, state, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpointer, "maybe_save", maybe_save)


# --- pieces ------------------------------------------------------------------------------------------------


def test_config_diff_names_fields_and_allows_mutable_ones():
    saved = {
        "seed": 0,
        "train": {"steps": 100, "batch_size": 32, "log_every": 10},
        "checkpoint": {"every": 5},
        "data": {"d": 8},
    }
    now = {
        "seed": 1,
        "train": {"steps": 500, "batch_size": 64, "log_every": 50},
        "checkpoint": {"every": 50},
        "data": {"d": 8, "extra": None},
    }
    assert config_guard.config_diff(saved, now) == ["data.extra", "seed", "train.batch_size"]
    assert config_guard.config_diff(saved, saved) == []
    assert (
        config_guard.describe_diff(saved, now, ["seed", "data.extra"]) == "seed: 0 -> 1; data.extra: (absent) -> null"
    )


def test_every_must_be_a_multiple_of_steps_per_call():
    with pytest.raises(
        ValueError,
        match=r"checkpoint.every must be an int >= 0 and a multiple of "
        r"train.steps_per_call \(10\), got 25",
    ):
        tiny_config(checkpoint__every=25)
    with pytest.raises(ValueError, match="checkpoint.max_to_keep"):
        tiny_config(checkpoint__max_to_keep=0)


# --- exact resume in-process ---------------------------------------------------------------------------------


def test_preempted_run_resumes_bitwise(tmp_path, mesh, reference, monkeypatch, capsys):
    ref_results, ref_w, ref_rows = reference
    preempt_at(monkeypatch, 70)
    with pytest.raises(checkpoint.Preempted) as e:
        train(tiny_config(), tmp_path, mesh)
    assert e.value.step == 70 and e.value.directory == ckpt_dir(tmp_path)
    assert sorted(os.listdir(ckpt_dir(tmp_path))) == ["40", "70"]  # every 40, and the preemption step
    assert [r["step"] for r in rows(tmp_path)] == [20, 40, 60]
    monkeypatch.undo()
    results, w, history = train(tiny_config(), tmp_path, mesh)
    assert "resuming from step 70" in capsys.readouterr().out
    assert [r["step"] for r in history] == [80, 100, 120]
    np.testing.assert_array_equal(w, ref_w)
    assert rows(tmp_path) == ref_rows  # bitwise equal metrics, no duplicated rows
    assert no_seconds(results) == no_seconds(ref_results)


def test_extending_steps_continues_and_equals_the_longer_run(tmp_path, mesh, reference, capsys):
    ref_results, ref_w, ref_rows = reference
    short, _, _ = train(tiny_config(train__steps=60), tmp_path, mesh)
    assert short["steps"] == 60
    results, w, history = train(tiny_config(checkpoint__every=20, train__log_every=20), tmp_path, mesh)
    assert "with changed checkpoint.every: 40 -> 20; train.steps: 60 -> 120" in capsys.readouterr().out
    np.testing.assert_array_equal(w, ref_w)
    assert rows(tmp_path) == ref_rows
    assert no_seconds(results) == no_seconds(ref_results)


def test_finished_arm_is_not_retrained(tmp_path, mesh, reference, monkeypatch):
    results, w, _ = train(tiny_config(), tmp_path, mesh)
    monkeypatch.setattr(arms.results, "measure", None)  # not re-measured

    def no_compile(*a, **k):
        raise AssertionError("a finished arm ran a training step")

    monkeypatch.setattr(checkpoint.Checkpointer, "save", no_compile)
    again, w2, history = train(tiny_config(), tmp_path, mesh)
    assert history == [] and again == results
    np.testing.assert_array_equal(w2, w)


def test_changed_config_is_refused_with_the_fields_named(tmp_path, mesh):
    train(tiny_config(train__steps=40), tmp_path, mesh)
    with pytest.raises(checkpoint.ConfigMismatch) as e:
        train(tiny_config(seed=1, train__batch_size=64, augment__keep_prob=0.3), tmp_path, mesh)
    msg = str(e.value)
    assert "\n" not in msg
    assert "augment.keep_prob, seed, train.batch_size (" in msg
    assert "seed: 0 -> 1" in msg and "train.batch_size: 32 -> 64" in msg and ckpt_dir(tmp_path) in msg
    with pytest.raises(checkpoint.ConfigMismatch, match="model.width"):
        train(tiny_config(train__steps=40, model__width=12), tmp_path, mesh)


def test_a_checked_resume_reads_the_saved_config_once(tmp_path, mesh, monkeypatch, capsys):
    train(tiny_config(train__steps=40), tmp_path, mesh)
    items, read = [], ocp.JsonCheckpointHandler.restore
    monkeypatch.setattr(
        ocp.JsonCheckpointHandler,
        "restore",
        lambda self, d, *a, **k: items.append(os.path.basename(d)) or read(self, d, *a, **k),
    )
    c = tiny_config(train__steps=80)
    checked = resumable.check_resume(
        os.path.join(tmp_path, ARM), arms.arm_run_config(c, ARM), mutable_fields=arms.RESUME_MUTABLE_FIELDS
    )
    assert checked[0] == 40 and items.count("config") == 1
    _, _, history = arms.train_arm(
        c, ARM, task.make_dictionary(c), mesh=mesh, workdir=str(tmp_path), verbose=False, checked=checked
    )
    assert "resuming from step 40" in capsys.readouterr().out and [r["step"] for r in history] == [60, 80]
    assert items.count("config") == 1 and items.count("meta") == 1


def test_corrupt_newest_falls_back_and_is_kept(tmp_path, mesh, reference, capsys):
    ref_results, ref_w, ref_rows = reference
    train(tiny_config(train__steps=80), tmp_path, mesh)  # checkpoints 40, 80
    ck = ckpt_dir(tmp_path)
    data = max(glob.glob(f"{ck}/80/state/**/d/*", recursive=True), key=os.path.getsize)
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    os.makedirs(f"{ck}/120.orbax-checkpoint-tmp/state")  # a half-written save
    results, w, history = train(tiny_config(), tmp_path, mesh)
    out = capsys.readouterr().out
    assert f"ignoring half-written checkpoint {ck}/120.orbax-checkpoint-tmp" in out
    assert f"checkpoint {ck}/80 is unreadable" in out
    assert "resuming from step 40" in out and f"kept the unusable checkpoint as {ck}/80.corrupt" in out
    assert os.path.exists(f"{ck}/80.corrupt/state")  # never deleted
    assert [r["step"] for r in history] == [60, 80, 100, 120]
    np.testing.assert_array_equal(w, ref_w)
    assert rows(tmp_path) == ref_rows


def test_all_checkpoints_unreadable_is_a_clear_error_and_nothing_is_renamed(tmp_path, mesh):
    c = tiny_config(train__steps=80)
    train(c, tmp_path, mesh)  # checkpoints 40, 80
    ck = ckpt_dir(tmp_path)
    for step in ("40", "80"):
        for data in glob.glob(f"{ck}/{step}/state/**/d/*", recursive=True):
            with open(data, "r+b") as f:
                f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(RuntimeError) as e:
        train(tiny_config(), tmp_path, mesh)
    msg = str(e.value)
    assert msg.startswith(f"no readable checkpoint in {ck}: step 80: ") and "; step 40: " in msg
    assert "\n" not in msg and sorted(os.listdir(ck)) == ["40", "80"]


def test_non_finite_loss_or_state_is_not_saved(tmp_path):
    ck = checkpoint.Checkpointer(str(tmp_path), config={"lr": 1.0})
    try:
        good = {"w": jnp.ones(3), "k": jnp.arange(2, dtype=jnp.uint32)}
        for state, loss in ((good, jnp.float32(jnp.nan)), (dict(good, w=jnp.array([1.0, jnp.inf, 0.0])), None)):
            with pytest.raises(
                FloatingPointError, match=f"at step 5, not saved; no checkpoint was saved yet in {tmp_path}"
            ):
                ck.save(5, state, loss=loss)
        ck.save(5, good, loss=jnp.float32(0.5))
        ck.wait()
        with pytest.raises(FloatingPointError, match=f"the last good checkpoint is step 5 in {tmp_path / '5'}"):
            ck.save(6, good, loss=jnp.float32(-jnp.inf))
    finally:
        ck.close()
    assert sorted(os.listdir(tmp_path)) == ["5"]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, mesh):
    # Warm-up towards a huge learning rate: finite at first, then the loss blows up (step 30 here).
    c = tiny_config(train__learning_rate=100.0, train__warmup_steps=120, train__log_every=10, checkpoint__every=10)
    with pytest.raises(FloatingPointError) as e:
        train(c, tmp_path, mesh)
    msg = str(e.value)
    step = int(msg.split(" at step ")[1].split()[0].rstrip(",;"))
    assert msg.startswith("non-finite loss") and 10 < step < 120
    last = step - 10
    assert f"the last good checkpoint is step {last} in {ckpt_dir(tmp_path)}/{last}" in msg
    assert max(int(d) for d in os.listdir(ckpt_dir(tmp_path))) == last
    ck = checkpoint.Checkpointer(
        ckpt_dir(tmp_path), config=arms.arm_run_config(c, ARM), every=10, mutable_fields=arms.RESUME_MUTABLE_FIELDS
    )
    restored = ck.restore(task.make_train_state(c, mesh)[2])
    ck.close()
    assert restored.step == last
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(jax.device_get(restored.state.params)))
    logged = rows(tmp_path)
    assert [r["step"] for r in logged] == list(range(10, step, 10))
    assert all(np.isfinite(r["loss"]) for r in logged)


# --- data-iterator state (host batches, grain) -----------------------------------------------------------------


class _Records:
    """A random-access source of {'x': [4], 'y': []} float32 records."""

    def __init__(self, n=64):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(n, 4)).astype(np.float32)
        self.y = (self.x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)).astype(np.float32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}

    def __repr__(self):
        return "_Records(64)"


def _loader():
    sampler = grain.samplers.IndexSampler(
        num_records=64, shard_options=grain.sharding.NoSharding(), shuffle=True, num_epochs=None, seed=3
    )
    return grain.DataLoader(
        data_source=_Records(),
        sampler=sampler,
        operations=[grain.transforms.Batch(batch_size=8, drop_remainder=True)],
        worker_count=0,
    )


def _fit_linear(mesh, workdir, total, preempt_step=None):
    model = nnx.Linear(4, 1, rngs=nnx.Rngs(0))
    tx = optax.adam(0.05)
    graphdef, state = loop.init_state(model, tx, 0)
    state = loop.place_state(state, mesh)

    def loss_fn(m, batch, key, step):
        return jnp.mean((m(batch["x"])[:, 0] - batch["y"]) ** 2), {}

    step_fn = loop.make_step_fn(graphdef, tx, loss_fn, mesh=mesh, steps_per_call=3, host_batches=True)
    it = iter(_loader())
    ck = checkpoint.Checkpointer(str(workdir), config={"lr": 0.05}, every=6)
    try:
        restored = ck.restore(state, data_iter=it)
        if restored is not None:
            state = restored.state
        if preempt_step is not None:
            original = ck.maybe_save

            def maybe_save(step, st, **kw):
                if step == preempt_step:
                    sigterm_self()
                return original(step, st, **kw)

            ck.maybe_save = maybe_save
        state, _ = loop.fit(step_fn, state, mesh=mesh, total_steps=total, log_every=3, batch_iter=it, checkpointer=ck)
    finally:
        ck.close()
    return jax.device_get(state.params["kernel"][...]), next(it)["x"]


def test_data_iterator_position_is_restored(tmp_path, mesh):
    ref_kernel, ref_next = _fit_linear(mesh, tmp_path / "ref", 30)
    with pytest.raises(checkpoint.Preempted):
        _fit_linear(mesh, tmp_path / "run", 30, preempt_step=15)  # mid-epoch (8 batches per epoch)
    assert glob.glob(str(tmp_path / "run" / "15" / "data" / "process_0-of-1.json"))
    kernel, next_x = _fit_linear(mesh, tmp_path / "run", 30)
    np.testing.assert_array_equal(kernel, ref_kernel)
    np.testing.assert_array_equal(next_x, ref_next)  # the iterator continued where the reference is


def test_fields_added_later_at_their_old_value_are_no_change():
    # an image checkpoint written before the objective.* fields existed resumes under today's defaults
    from experiments.configs import image_defaults

    now = image_defaults.base().to_dict()
    flat = traverse_util.flatten_dict(now, sep=".")
    assert {k: flat[k] for k in config_guard.ADDED_FIELDS} == config_guard.ADDED_FIELDS
    old = {
        **now,
        "objective": {k: v for k, v in now["objective"].items() if f"objective.{k}" not in config_guard.ADDED_FIELDS},
    }
    assert config_guard.config_diff(old, now) == [] and config_guard.config_diff(now, old) == []
    byol = {**now, "objective": {**now["objective"], "name": "byol"}}
    assert config_guard.config_diff(old, byol) == ["objective.name"]
    with pytest.raises(config_guard.ConfigMismatch, match=r'objective.name: \(absent\) -> "byol"'):
        config_guard.check_config(old, byol, config_guard.MUTABLE_FIELDS, "run/5")
