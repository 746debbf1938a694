"""Image experiments end to end at toy size: config checks, optimiser wiring, mocked TFDS run, shipped photos."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

from cl_features.augment import image_sets
from cl_features.data import image_sources, loader
from cl_features.image_training import inputs, network, recipe, trainer
from cl_features.jsonio import read_jsonl
from cl_features.models import heads
from cl_features.train import checkpoint, loop, optim
from experiments.configs import mock_cifar10_tiny, photos_simclr_tiny


@pytest.fixture(scope="module", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """Runs of one config compile the same programs again (new closures): a persistent cache shares them."""
    old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    compilation_cache.set_cache_dir(str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", old[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
    compilation_cache.reset_cache()


def _set(config, dotted, value):
    *path, last = dotted.split(".")
    node = config
    for p in path:
        node = node[p]
    node[last] = value


# ------------------------------------------------------------------------------------------ config checks

BAD = [
    ("task", "byol", "task"),
    ("data.source", "s3", "data.source"),
    ("data.image_size", 0, "data.image_size"),
    ("data.std", (0.2, 0.0, 0.2), "data.std"),
    ("model.encoder", "vit_b16", "model.encoder"),
    ("model.dtype", "float16", "model.dtype"),
    ("model.head_layers", 0, "model.head_layers"),
    ("objective.temperature", 0.0, "objective.temperature"),
    ("objective.name", "moco", "objective.name"),
    ("objective.predictor_layers", 0, "objective.predictor_layers"),
    ("objective.predictor_hidden_dim", 0, "objective.predictor_hidden_dim"),
    ("objective.ema_momentum", 1.0, "objective.ema_momentum"),
    ("objective.ema_schedule", "linear", "objective.ema_schedule"),
    ("augment.set", "autoaugment", "augment.set"),
    ("augment.crop.scale", (0.0, 1.0), "augment.crop.scale"),
    ("augment.color_jitter.hue", 2.0, "augment.color_jitter.hue"),
    ("train.batch_size", 1, "train.batch_size"),
    ("train.optimizer", "rmsprop", "train.optimizer"),
    ("train.base_learning_rate", -1.0, "train.base_learning_rate"),
    ("train.learning_rate_scaling", "cubic", "train.learning_rate_scaling"),
    ("train.momentum", 1.0, "train.momentum"),
    ("train.log_every", 0, "train.log_every"),
    ("eval.every_steps", 6, "eval.every_steps"),
    ("eval.knn_k", 0, "eval.knn_k"),
    ("eval.crop_fraction", 0.0, "eval.crop_fraction"),
    ("probe.method", "svm", "probe.method"),
    ("probe.l2", (-1.0,), "probe.l2"),
]


@pytest.fixture
def no_compile(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", refuse)
    monkeypatch.setattr(nnx, "jit", refuse)


@pytest.mark.parametrize("field,value,match", BAD)
def test_bad_values_are_refused_before_compiling(field, value, match, no_compile):
    config = mock_cifar10_tiny.get_config()
    _set(config, field, value)
    with pytest.raises(ValueError, match=f"config.{match} must be|{match} must be") as err:
        trainer.run(config, workdir=None, verbose=False)
    assert "\n" not in str(err.value)


def test_missing_dataset_is_one_line_before_compiling(tmp_path, no_compile):
    config = mock_cifar10_tiny.get_config()
    config.data.data_dir = str(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        trainer.run(config, workdir=None, verbose=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"data_dir={tmp_path}" in message and "tfds build cifar10" in message


def test_cli_prints_the_missing_dataset_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.images",
            "--config=experiments/configs/mock_cifar10_tiny.py",
            f"--workdir={tmp_path / 'run'}",
            f"--config.data.data_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: TFDS dataset 'cifar10' is not prepared as array_record")
    assert f"`tfds build cifar10 --data_dir={tmp_path} --file_format=array_record`" in last
    assert not (tmp_path / "run").exists()


def test_named_configs_are_valid():
    from experiments.configs import (
        cifar10_simclr_resnet18,
        cifar10_simclr_wrn34x5,
        cifar10_supervised_wrn34x5,
        imagenet_simclr_resnet50,
        photos_supervised_tiny,
    )

    r18 = trainer.validate(cifar10_simclr_resnet18.get_config())
    assert (r18.train.batch_size, r18.train.epochs, r18.objective.temperature, r18.train.optimizer) == (
        512,
        1000.0,
        0.5,
        "lars",
    )
    assert recipe.learning_rate(r18.train.base_learning_rate, 512, "linear") == 2.0
    assert trainer.validate(cifar10_simclr_wrn34x5.get_config()).model.encoder == "wrn34x5"
    assert trainer.validate(cifar10_supervised_wrn34x5.get_config()).task == "supervised"
    inet = trainer.validate(imagenet_simclr_resnet50.get_config())
    assert (inet.train.batch_size, inet.objective.temperature, inet.model.encoder) == (4096, 0.1, "resnet50_imagenet")
    assert image_sets.resolve(inet.augment).blur.enabled
    assert trainer.validate(photos_supervised_tiny.get_config()).task == "supervised"


def test_configs_import_no_jax():
    code = (
        "import importlib, pkgutil, sys; import experiments.configs as p\n"
        "for m in pkgutil.iter_modules(p.__path__): importlib.import_module('experiments.configs.' + m.name)\n"
        "print(sorted(m for m in ('jax', 'flax', 'numpy', 'orbax', 'grain') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr[-2000:]


def test_augment_overrides_apply_on_top_of_the_named_set():
    fields = image_sets.config_fields("crop_flip", **{"crop.scale": (0.2, 1.0)})
    fields.color_jitter.strength = 1.0  # on a set without colour: kept, but the op stays off
    cfg = image_sets.resolve(fields)
    assert cfg.crop.enabled and cfg.flip.enabled and not cfg.color_jitter.enabled
    assert tuple(cfg.crop.scale) == (0.2, 1.0) and cfg.color_jitter.strength == 1.0
    fields.set = "simclr"
    assert image_sets.resolve(fields).blur.enabled


# -------------------------------------------------------------------------------- schedule and optimiser


def test_learning_rate_scaling_and_schedule():
    assert recipe.learning_rate(1.0, 512, "linear") == 2.0
    assert recipe.learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    assert recipe.learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert recipe.learning_rate(0.1, 4096, "none") == 0.1
    c = trainer.validate(photos_simclr_tiny.get_config())
    c.train.steps, c.train.epochs, c.train.steps_per_call = None, 2.5, 3
    c.train.batch_size, c.train.warmup_epochs, c.train.base_learning_rate = 64, 0.5, 0.8
    s = recipe.make_schedule(c, num_train=512)  # 8 steps per epoch
    assert (s.steps_per_epoch, s.steps, s.warmup_steps, s.learning_rate) == (8.0, 21, 4, 0.2)  # 20 -> 21 (x3)
    lr = optim.schedule(learning_rate=s.learning_rate, kind="warmup_cosine", steps=s.steps, warmup_steps=s.warmup_steps)
    assert float(lr(0)) == 0.0 and float(lr(2)) == pytest.approx(0.1) and float(lr(4)) == pytest.approx(0.2)
    assert float(lr(s.steps)) == pytest.approx(0.0, abs=1e-7)
    c.train.warmup_epochs = 3.0  # 24 warmup steps of 21
    with pytest.raises(ValueError, match="config.train.warmup_epochs=3.0 gives 24 warmup steps"):
        recipe.make_schedule(c, num_train=512)


def _head_params():
    head = heads.ProjectionHead(4, 8, 3, num_layers=2, rngs=nnx.Rngs(0))  # Linear(no bias) BN Linear(bias)
    return nnx.state(head, nnx.Param)


def _named_leaves(tree):
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_decay_mask_keeps_kernels_only():
    mask = _named_leaves(recipe.decay_mask(_head_params()))
    assert len(mask) == 5
    for name, keep in mask.items():
        assert keep == ("kernel" in name), name


@pytest.mark.parametrize("decay_bn_and_bias", [False, True])
def test_lars_excludes_bn_and_bias_from_decay_and_trust_ratio(decay_bn_and_bias):
    c = trainer.validate(photos_simclr_tiny.get_config())
    c.train.optimizer, c.train.schedule, c.train.warmup_epochs = "lars", "constant", 0.0
    c.train.base_learning_rate, c.train.batch_size, c.train.weight_decay = 0.5, 256, 0.1
    c.train.decay_bn_and_bias = decay_bn_and_bias
    tx = recipe.make_optimizer(c, recipe.make_schedule(c, num_train=1024))
    params = _head_params()
    leaves = jax.tree_util.tree_leaves(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    grads = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(params), [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    p, g, u = _named_leaves(params), _named_leaves(grads), _named_leaves(updates)
    for name in p:
        pn, gn = np.asarray(p[name], np.float64), np.asarray(g[name], np.float64)
        if "kernel" in name or decay_bn_and_bias:  # LARS: lr * 0.001 ||w|| / ||g + wd w|| * (g + wd w)
            d = gn + 0.1 * pn
            w_norm, d_norm = np.linalg.norm(pn), np.linalg.norm(d)
            trust = 0.001 * w_norm / d_norm if w_norm > 0 and d_norm > 0 else 1.0
            want = -0.5 * trust * d
        else:  # BN scale / bias and biases: plain momentum SGD, first step = -lr * g
            want = -0.5 * gn
        np.testing.assert_allclose(np.asarray(u[name]), want, rtol=1e-5, atol=1e-8, err_msg=name)


# ------------------------------------------------------------------------------------ data and example ids


@pytest.fixture
def mock_cifar10():
    with tfds.testing.mock_data(num_examples=48):
        yield


def test_global_example_ids_match_the_single_process_batch(mock_cifar10):
    source = image_sources.open_source("cifar10", "train", "/nonexistent")

    def batch(index, count):
        dl = loader.make_loader(source, global_batch_size=8, seed=5, process_index=index, process_count=count)
        return next(iter(dl))["image"]

    whole = batch(0, 1)
    for count in (1, 2, 4):
        global_array = np.concatenate([batch(p, count) for p in range(count)])  # process p at rows p*b..
        ids = network.global_example_ids(8, count)
        np.testing.assert_array_equal(global_array, whole[ids])


def test_image_folder_source_and_class_check(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog")), ("other", ("cat", "owl"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for k in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / split / name / f"{k}.png"
                )
    config = photos_simclr_tiny.get_config()
    config.data.source, config.train.batch_size = "folder", 4
    config.data.folder_train, config.data.folder_test = str(tmp_path / "train"), str(tmp_path / "test")
    data = inputs.open_data(trainer.validate(config))
    assert (len(data.train), len(data.test), data.num_classes) == (6, 6, 2)
    assert data.train[5]["image"].shape == (16, 16, 3) and data.train[5]["label"] == 1
    config.data.folder_test = str(tmp_path / "other")
    with pytest.raises(ValueError, match="config.data.folder_test must have the class directories"):
        inputs.open_data(trainer.validate(config))
    config.data.folder_test = None
    with pytest.raises(ValueError, match="config.data.folder_test must be"):
        trainer.validate(config)


# --------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_mock_cifar10_simclr_end_to_end_and_resume(mock_cifar10, tmp_path, monkeypatch):
    config = mock_cifar10_tiny.get_config()
    config.data.data_dir = "/nonexistent/ignored/by/mock"
    config.checkpoint.every = 0  # saves at the end and on preemption only (each save costs ~1 s here)
    whole = trainer.run(config, str(tmp_path / "a"), verbose=False)

    # Run b is preempted at its 5th step boundary (saved at step 5, mid-epoch: 48 / 16 = 3 steps per epoch),
    # then the same call resumes it: model, optimizer and grain iterator state come back from the checkpoint.
    boundaries = iter(range(1, 100))
    monkeypatch.setattr(checkpoint, "preemption_requested", lambda: next(boundaries) == 5)
    with pytest.raises(checkpoint.Preempted) as stop:
        trainer.run(config, str(tmp_path / "b"), verbose=False)
    assert stop.value.step == 5
    assert [r["step"] for r in read_jsonl(str(tmp_path / "b" / "metrics.jsonl"))] == [4]
    resumed = trainer.run(config, str(tmp_path / "b"), verbose=False)
    assert resumed["resumed_from"] == 5 and whole["resumed_from"] == 0
    summaries = [whole, resumed]
    changed = mock_cifar10_tiny.get_config()
    changed.data.data_dir, changed.objective.temperature = config.data.data_dir, 0.3
    with pytest.raises(checkpoint.ConfigMismatch, match="objective.temperature"):
        trainer.run(changed, str(tmp_path / "b"), verbose=False)
    rows = [read_jsonl(str(tmp_path / run / "metrics.jsonl")) for run in ("a", "b")]
    assert rows[0] == rows[1]  # same seed, same numbers, interrupted or not
    assert [r["step"] for r in rows[0]] == [4, 8, 8]  # two train/eval rows, then the probe
    for row in rows[0][:2]:
        assert np.isfinite(row["contrastive_loss"]) and 0 <= row["knn_acc"] <= 1 and 0 <= row["online_probe_acc"] <= 1
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert json.loads((tmp_path / "a" / "run_info.json").read_text())["kind"] == "images"
    for key in ("knn_acc", "linear_probe_acc", "online_probe_acc", "final_loss", "steps", "seconds"):
        assert key in summary, key
    assert summary["steps"] == 8 and summary["num_classes"] == 10 and summary["num_train"] == 48
    assert summary["final_loss"] == rows[0][1]["contrastive_loss"]
    assert summary["learning_rate"] == 0.5 * 16 / 256
    assert summaries[0]["knn_acc"] == summaries[1]["knn_acc"] == rows[0][1]["knn_acc"]
    assert "tensorflow" not in sys.modules


@pytest.mark.slow
def test_one_and_two_devices_give_the_same_run():
    # Views come from global example ids, BatchNorm and NT-Xent see the global batch: the sharded run is the
    # one-device run up to float32 rounding (measured: final loss 1.9395125 vs 1.9395134, same kNN accuracy).
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "tests/_images_devices_child.py"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(env, PYTHONPATH="."),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = out["1"], out["2"]
    assert two["final_loss"] == pytest.approx(one["final_loss"], rel=1e-5)
    assert two["knn_acc"] == one["knn_acc"] and two["online_probe_acc"] == one["online_probe_acc"]


@pytest.mark.slow
def test_mock_cifar10_supervised_end_to_end(mock_cifar10, tmp_path):
    config = mock_cifar10_tiny.get_config()
    config.task, config.objective.online_probe, config.augment.set = "supervised", False, "crop_flip"
    config.data.data_dir = "/nonexistent/ignored/by/mock"
    config.probe.enabled = False
    summary = trainer.run(config, str(tmp_path), verbose=False)
    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [4, 8]
    assert all(0 <= r["train_acc"] <= 1 and np.isfinite(r["loss"]) for r in rows)
    assert 0 <= summary["test_acc"] <= 1 and "linear_probe_acc" not in summary
    assert summary["final_loss"] == rows[-1]["loss"]


@pytest.mark.slow
def test_contrastive_training_on_photos_beats_the_random_encoder():
    config = photos_simclr_tiny.get_config()
    config.train.steps, config.train.base_learning_rate = 60, 1.6
    config.train.log_every, config.eval.every_steps = 30, 0
    summary = trainer.run(config, None, verbose=False)
    # Measured on this config (2 shared CPU cores, ~30 s): kNN 0.414 -> 0.627, logistic linear probe
    # 0.570 -> 0.693, online probe 0.633 (512 test crops from unseen halves of the photos, 8 classes, chance 0.125).
    assert summary["knn_acc"] > summary["knn_acc_init"] + 0.1, summary
    assert summary["linear_probe_acc"] > summary["linear_probe_acc_init"] + 0.08, summary
    assert summary["online_probe_acc"] > 0.4


# ------------------------------------------------------------------------------------------ simsiam, byol


def test_simsiam_and_byol_only_with_task_simclr(no_compile):
    config = mock_cifar10_tiny.get_config()
    config.task, config.objective.name = "supervised", "byol"
    with pytest.raises(ValueError, match="config.objective.name must be nt_xent with task=supervised") as err:
        trainer.run(config, workdir=None, verbose=False)
    assert "\n" not in str(err.value)


def _learner_config(name):
    c = photos_simclr_tiny.get_config()
    c.objective.name = name
    return trainer.validate(c)


def _unit64(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_simsiam_and_byol_losses_match_a_float64_reference(name):
    c = _learner_config(name)
    model = network.make_model(c, num_classes=8)
    x = jax.random.normal(jax.random.key(0), (2 * 6, 16, 16, 3))
    loss, _, metrics = network.ssl_loss(c, model, x)
    # the same forward again (train-mode BatchNorm normalises with this batch's statistics: the same outputs)
    z = np.asarray(model.head(model.encoder(x)), np.float64)
    p = np.asarray(model.predictor(model.head(model.encoder(x))), np.float64)
    p1, p2 = _unit64(p[:6]), _unit64(p[6:])
    if name == "simsiam":
        z1, z2 = _unit64(z[:6]), _unit64(z[6:])
        want = -0.5 * (np.mean(np.sum(p1 * z2, 1)) + np.mean(np.sum(p2 * z1, 1)))
    else:
        t = np.asarray(model.target_head(model.target_encoder(x)), np.float64)
        np.testing.assert_allclose(t, z, rtol=1e-5, atol=1e-6)  # at init the target is a copy of the online net
        t1, t2 = _unit64(t[:6]), _unit64(t[6:])
        want = np.mean(2 - 2 * np.sum(p1 * t2, 1)) + np.mean(2 - 2 * np.sum(p2 * t1, 1))
    assert float(loss) == pytest.approx(want, rel=1e-5, abs=1e-6)
    u = _unit64(z)
    assert float(metrics["repr_std"]) == pytest.approx(np.sqrt(z.shape[1]) * np.mean(np.std(u, axis=0)), rel=1e-4)


def test_byol_momentum_schedule():
    c = _learner_config("byol")
    c.objective.ema_momentum = 0.9
    assert float(network.ema_momentum(c, 0, 100)) == pytest.approx(0.9)
    assert float(network.ema_momentum(c, 50, 100)) == pytest.approx(0.95)
    assert float(network.ema_momentum(c, 100, 100)) == pytest.approx(1.0)
    c.objective.ema_schedule = "constant"
    assert float(network.ema_momentum(c, 50, 100)) == pytest.approx(0.9)


def test_byol_step_moves_the_target_after_the_optimiser_update():
    c = _learner_config("byol")
    c.objective.ema_momentum = 0.8  # the cosine schedule's momentum after step 0 is ema_momentum itself
    c.train.warmup_epochs = 0.0  # a non-zero learning rate at step 0: the online network moves
    mesh = trainer.make_mesh(c)
    schedule = recipe.make_schedule(c, 512)
    tx = recipe.make_optimizer(c, schedule)
    graphdef, state = loop.init_state(network.make_model(c, 8), tx, 0)
    before = loop.merge(graphdef, jax.tree.map(np.array, state))
    online0 = nnx.state(before.encoder, nnx.Param)
    step_fn = trainer.make_step_fn(c, graphdef, tx, schedule, mesh)
    rng = np.random.default_rng(0)
    batches = {
        "image": rng.integers(0, 256, (1, 64, 16, 16, 3), dtype=np.uint8),
        "label": rng.integers(0, 8, (1, 64), dtype=np.int32),
    }
    state = loop.place_state(state, mesh)
    state, _ = step_fn.fn(state, loop.stack_batches(iter([jax.tree.map(lambda b: b[0], batches)]), 1, mesh))
    after = loop.merge(graphdef, jax.tree.map(np.array, state))
    for module in ("encoder", "head"):
        t0 = jax.tree.leaves(nnx.state(getattr(before, "target_" + module), heads.EMATarget))
        t1 = jax.tree.leaves(nnx.state(getattr(after, "target_" + module), heads.EMATarget))
        o1 = jax.tree.leaves(nnx.state(getattr(after, module), nnx.Param))
        assert len(t0) == len(t1) == len(o1) > 0
        for a, b, o in zip(t0, t1, o1, strict=True):
            np.testing.assert_allclose(b, 0.8 * a + 0.2 * o, rtol=1e-5, atol=1e-7)
    moved = jax.tree.leaves(nnx.state(after.encoder, nnx.Param))
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(online0), moved, strict=True))


def test_mock_cifar10_byol_resumed_equals_uninterrupted(mock_cifar10, tmp_path, monkeypatch):
    config = mock_cifar10_tiny.get_config()
    config.objective.name = "byol"
    config.data.data_dir = "/nonexistent/ignored/by/mock"
    config.checkpoint.every, config.probe.enabled, config.eval.every_steps = 0, False, 0
    whole = trainer.run(config, str(tmp_path / "a"), verbose=False)
    boundaries = iter(range(1, 100))
    monkeypatch.setattr(checkpoint, "preemption_requested", lambda: next(boundaries) == 5)
    with pytest.raises(checkpoint.Preempted):
        trainer.run(config, str(tmp_path / "b"), verbose=False)
    resumed = trainer.run(config, str(tmp_path / "b"), verbose=False)
    assert resumed["resumed_from"] == 5
    rows = [read_jsonl(str(tmp_path / run / "metrics.jsonl")) for run in ("a", "b")]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [4, 8]
    assert all(np.isfinite(r["contrastive_loss"]) and r["repr_std"] > 0 for r in rows[0])
    assert whole["knn_acc"] == resumed["knn_acc"] and whole["effective_rank"] == resumed["effective_rank"] > 1
