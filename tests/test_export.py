"""Every experiment's compiled train and eval functions (and a sweep group's) lower for TPU and CUDA from a CPU machine.

`jax.export` lowers a jitted function to StableHLO for the named platforms without a device of that kind (nothing
runs), so a step that only lowers on CPU (a CPU-only primitive or lowering rule, a host callback, a platform
branch) fails here. Inputs are abstract (jax.ShapeDtypeStruct from jax.eval_shape); shapes are toy sizes, the
model families, dtypes and code paths those of the named experiments. Steps are exported with the steps of a call
rolled in a `lax.scan`, as an accelerator runs them (train.unroll is a CPU default only).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from cl_features.augment import vectors
from cl_features.image_training import evaluator, inputs, network, recipe, trainer
from cl_features.measure import knn, linear_probe
from cl_features.sweep import batched, grid
from cl_features.synthetic import arms, task
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib
from experiments.configs import (
    cifar10_simclr_resnet18,
    cifar10_supervised_wrn34x5,
    imagenet_simclr_resnet50,
    learners_synthetic,
)
from experiments.configs import synthetic as synthetic_config

PLATFORMS = ("tpu", "cuda")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export(fn, *args, **kwargs) -> jax.export.Exported:
    """Lowers jitted `fn` at abstract `args` for every platform of PLATFORMS (raises if any cannot lower)."""
    exp = jax.export.export(fn, platforms=PLATFORMS)(*args, **kwargs)
    assert exp.platforms == PLATFORMS
    return exp


def abstract(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def abstract_state(build):
    """(graphdef, abstract TrainState) of `build() -> (graphdef, state)`, traced only (no initialisation runs)."""
    box = {}

    def state_only():
        box["graphdef"], state = build()
        return state

    state = jax.eval_shape(state_only)
    return box["graphdef"], state


# ------------------------------------------------------------------------------------------ synthetic experiment


def synthetic(objective: str) -> ml_collections.ConfigDict:
    c = synthetic_config.get_config()
    c.objective.name = objective
    c.data.d, c.data.d1, c.train.batch_size, c.train.steps_per_call = 8, 32, 16, 2
    return arms.validate(c)


STEPS = [(objective, "complementary_mask") for objective in task.OBJECTIVES]
STEPS += [("info_nce", arm) for arm in vectors.AUGMENTATIONS if arm != "complementary_mask"]


@pytest.mark.parametrize("objective,arm", STEPS)
def test_synthetic_train_step_exports(objective, arm):
    c = synthetic(objective)
    mesh = mesh_lib.make_mesh(None)
    dictionary = task.make_dictionary(c)
    graphdef, tx, state = task.make_train_state(c)  # toy size: a few small arrays
    step_fn = task.make_step_fn(c, arm, dictionary, graphdef, tx, mesh)
    exp = export(step_fn.fn, abstract(state), None)
    assert exp.out_avals[0].shape == ()  # the step counter comes first


# ------------------------------------------------------------------------------------------ image experiments


def image(config_module, size: int) -> ml_collections.ConfigDict:
    """A named image config at toy shapes (batch 4 of size x size images); its encoder, dtype, objective, augment
    set and recipe."""
    return toy_image(config_module.get_config(), size)


def toy_image(c: ml_collections.ConfigDict, size: int) -> ml_collections.ConfigDict:
    """An image config at toy shapes (batch 4 of size x size images), validated."""
    c.data.image_size, c.model.input_size = size, size
    c.train.batch_size, c.train.steps_per_call, c.train.unroll = 4, 2, False
    c.train.log_every, c.eval.every_steps, c.eval.batch_size = 2, 0, 4
    return trainer.validate(c)


NUM_CLASSES = 10


def image_step(c):
    mesh = trainer.make_mesh(c)
    schedule = recipe.make_schedule(c, num_train=50_000)
    tx = recipe.make_optimizer(c, schedule)
    graphdef, state = abstract_state(lambda: loop.init_state(network.make_model(c, NUM_CLASSES), tx, 0))
    step_fn = trainer.make_step_fn(c, graphdef, tx, schedule, mesh)
    s = c.data.image_size
    batches = {
        "image": jax.ShapeDtypeStruct((c.train.steps_per_call, c.train.batch_size, s, s, 3), jnp.uint8),
        "label": jax.ShapeDtypeStruct((c.train.steps_per_call, c.train.batch_size), jnp.int32),
    }
    return graphdef, state, mesh, step_fn, batches


IMAGE_CONFIGS = [  # (config, image side): ImageNet's ResNet-50 downsamples 32x
    (cifar10_simclr_resnet18, 8),
    (cifar10_supervised_wrn34x5, 8),
    (imagenet_simclr_resnet50, 32),
]


@pytest.mark.parametrize(
    "config_module,size", IMAGE_CONFIGS, ids=[m.__name__.rsplit(".", 1)[-1] for m, _ in IMAGE_CONFIGS]
)
def test_image_train_and_eval_export(config_module, size):
    c = image(config_module, size)
    assert c.model.dtype == "bfloat16"
    graphdef, state, mesh, step_fn, batches = image_step(c)
    exp = export(step_fn.fn, state, batches)
    assert exp.nr_devices == 1
    data = inputs.ImageData(train=[None] * 8, test=[None] * 8, num_classes=NUM_CLASSES)
    ev = evaluator.Evaluator(c, graphdef, data, mesh)
    s = c.data.image_size
    images = jax.ShapeDtypeStruct((c.eval.batch_size, s, s, 3), jnp.uint8)
    exp = export(ev._fn, state.params, state.rest, images)
    assert exp.out_avals[0].dtype == jnp.float32


@pytest.mark.parametrize("objective", ["simsiam", "byol"])
def test_non_contrastive_image_train_step_exports(objective):
    # the ResNet-18 SimCLR config with a predictor (and for byol the EMA target, moved after the optimiser step)
    c = cifar10_simclr_resnet18.get_config()
    c.objective.name = objective
    c = toy_image(c, 8)
    _, state, _, step_fn, batches = image_step(c)
    exp = export(step_fn.fn, state, batches)
    assert exp.nr_devices == 1


def test_knn_and_probe_export():
    f = jax.ShapeDtypeStruct((64, 16), jnp.float32)
    y = jax.ShapeDtypeStruct((64,), jnp.int32)
    export(knn._predict, f, y, f, jax.ShapeDtypeStruct((), jnp.float32), num_classes=10, k=8, chunk=32)
    x = jax.ShapeDtypeStruct((64, 16), jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    export(linear_probe._lbfgs, x, y, scalar, scalar, num_classes=10, max_iter=20)


def test_export_refuses_a_cpu_only_step():
    """The check itself: a primitive with no TPU lowering (eig) is refused, as a step using it would be."""
    step = jax.jit(lambda x: jnp.linalg.eig(x)[0].real)
    with pytest.raises(NotImplementedError, match="tpu"):
        export(step, jax.ShapeDtypeStruct((4, 4), jnp.float32))


# ------------------------------------------------------------------------------------------ synthetic sweeps


@pytest.mark.parametrize("objective", ["info_nce", "byol"])  # byol: a predictor and an EMA target per run
def test_sweep_group_step_and_log_export(objective):
    """A sweep group's program (the synthetic step vmapped over runs) and its recovery log, 2 runs at toy size."""
    c = learners_synthetic.get_config()
    c.sweep.objectives, c.sweep.seeds = objective, 2
    c.data.d, c.data.d1, c.train.batch_size, c.train.steps_per_call = 8, 32, 16, 2
    sweep = grid.expand(c)
    (group,) = sweep.groups
    gc = grid.run_config(c, sweep.runs[group.runs[0]])
    program = batched.build(gc, group.arm, group.traced, batched.make_mesh(None), c.sweep.vmap_runs)
    state = abstract(program.state)
    exp = export(jax.jit(program.step_fn.fn), state, None)
    assert exp.out_avals[0].shape == ()  # the group's step counter
    export(program.log, state)


SHARDED_CHILD = """
from tests import test_export as t

c = t.synthetic("info_nce")
graphdef, tx, state = t.task.make_train_state(c)
mesh = t.mesh_lib.make_mesh(None)
step_fn = t.task.make_step_fn(c, "complementary_mask", t.task.make_dictionary(c), graphdef, tx, mesh)
print(t.export(step_fn.fn, t.abstract(state), None).nr_devices)
_, state, _, step_fn, batches = t.image_step(t.image(t.cifar10_simclr_resnet18, 8))
print(t.export(step_fn.fn, state, batches).nr_devices)
"""


def test_steps_sharded_over_four_devices_export():
    """The synthetic and SimCLR steps with the batch sharded over a 4-device mesh (a fresh process: the CPU device
    count is fixed when JAX starts)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", SHARDED_CHILD], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["4", "4"]
