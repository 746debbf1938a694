"""The pipelined step (batch of step s+1 drawn during step s) against the plain one that draws in the loss."""

import jax
import numpy as np
import pytest

from cl_features.synthetic import arms, task
from cl_features.train import loop
from cl_features.train import mesh as mesh_lib
from experiments.configs import synthetic as synthetic_config


def _config(arm_steps=20):
    c = synthetic_config.get_config()
    c.data.d, c.data.d1 = 8, 32
    c.model.width = 16
    c.train.batch_size, c.train.steps, c.train.steps_per_call, c.train.log_every = 32, arm_steps, 5, 5
    return arms.validate(c)


def _run(c, arm, calls, **step_kw):
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    graphdef, tx, state = task.make_train_state(c, mesh)
    step = loop.make_step_fn(
        graphdef,
        tx,
        task.make_loss_fn(c, arm, dictionary, mesh),
        mesh=mesh,
        steps_per_call=c.train.steps_per_call,
        **step_kw,
    )
    rows = []
    for _ in range(calls):
        state, metrics = step.fn(state, None)
        rows.append(jax.device_get(metrics))
    return np.asarray(state.params["w"][...]), rows, int(state.step)


@pytest.mark.parametrize("arm", ["complementary_mask", "gaussian_noise"])
def test_pipelined_draws_match_drawing_in_the_loss(arm):
    c = _config()
    sample_fn = task.make_sample_fn(c, arm, task.make_dictionary(c), mesh_lib.make_mesh(1))
    w_plain, rows_plain, step_plain = _run(c, arm, 3)
    w_pipe, rows_pipe, step_pipe = _run(c, arm, 3, sample_fn=sample_fn)
    w_unrolled, rows_unrolled, _ = _run(c, arm, 3, sample_fn=sample_fn, unroll=True)
    assert step_plain == step_pipe == 15
    # Same keys, same batches, same updates: equal up to float32 rounding of the fused arithmetic (a batch drawn
    # one step off would give a different loss in the first call already).
    for w in (w_pipe, w_unrolled):
        np.testing.assert_allclose(w, w_plain, rtol=1e-5, atol=1e-6)
    for rows in (rows_pipe, rows_unrolled):
        for a, b in zip(rows, rows_plain):
            for k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_sample_fn_and_host_batches_exclude_each_other():
    c = _config()
    mesh = mesh_lib.make_mesh(1)
    dictionary = task.make_dictionary(c)
    graphdef, tx, _ = task.make_train_state(c, mesh)
    with pytest.raises(ValueError, match="sample_fn and host_batches"):
        loop.make_step_fn(
            graphdef,
            tx,
            task.make_loss_fn(c, "none", dictionary, mesh),
            mesh=mesh,
            host_batches=True,
            sample_fn=task.make_sample_fn(c, "none", dictionary, mesh),
        )


def test_train_state_drawn_under_vmap_with_array_config_values_is_the_runs_own():
    """make_train_state(c) without a mesh traces: seeds as an array under vmap give each seed's own state (the
    weights to 1 ulp: compiled, the normal draw and its scaling fuse and round unlike op-by-op)."""
    import ml_collections

    c = _config()

    def one(seed):
        d = c.to_dict()
        d["seed"] = seed
        return task.make_train_state(ml_collections.ConfigDict(d))[2]

    states = jax.jit(jax.vmap(one))(jax.numpy.asarray([0, 3], jax.numpy.int32))
    for i, seed in enumerate([0, 3]):
        c.seed = seed
        own = task.make_train_state(c, mesh_lib.make_mesh(1))[2]
        for a, b in zip(jax.tree_util.tree_leaves(own), jax.tree_util.tree_leaves(states), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=2e-7, atol=1e-7)
