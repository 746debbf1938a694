"""The non-contrastive learners in the synthetic experiment: BYOL's EMA by hand, short runs, resume, bad values."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from cl_features.models import heads
from cl_features.synthetic import arms, results, task
from cl_features.train import checkpoint
from cl_features.train import mesh as mesh_lib
from experiments.configs import synthetic as synthetic_config

MEASURES = ("recovered_fraction", "span_share", "sparse_corr", "dense_corr", "probe_accuracy", "final_loss")
MEASURES += ("effective_rank", "top_singular_share")


def toy(objective="byol", steps=100):
    c = synthetic_config.get_config()
    c.arms, c.objective.name = "complementary_mask", objective
    c.data.d, c.data.d1 = 8, 32
    c.model.bias_ramp_steps = 50
    c.train.batch_size, c.train.steps, c.train.steps_per_call, c.train.log_every = 64, steps, 25, 50
    c.checkpoint.every = 50
    c.measure.num_samples = 256
    return c


def test_byol_target_is_the_ema_of_the_online_network_by_hand():
    c = toy()
    c.objective.ema_momentum, c.train.steps_per_call, c.train.learning_rate = 0.9, 1, 0.5
    c = arms.validate(c)
    mesh = mesh_lib.make_mesh(1)
    graphdef, tx, state = task.make_train_state(c, mesh)
    step = task.make_step_fn(c, "complementary_mask", task.make_dictionary(c), graphdef, tx, mesh)
    host = lambda tree: np.asarray(jax.device_get(tree["w"][...]), np.float64)  # noqa: E731
    target, online = host(state.rest["target"]), host(state.params["net"])
    np.testing.assert_array_equal(target, online)  # xi_{-1} = theta_0
    assert "target" not in state.params  # the optimiser never sees the target
    for _ in range(4):
        state, _ = step.fn(state, None)
        expected = 0.9 * target + 0.1 * online  # with the online weights the step started from
        target, online = host(state.rest["target"]), host(state.params["net"])
        np.testing.assert_allclose(target, expected, rtol=1e-6, atol=1e-7)
    assert np.abs(target - online).max() > 1e-3  # the target lags the online network


@pytest.mark.parametrize("objective", ["simsiam", "byol", "spectral_contrastive", "vicreg"])
def test_a_short_run_is_finite_and_reports_every_measurement_and_the_collapse_measure(objective):
    c = toy(objective)
    if objective == "spectral_contrastive":  # its quartic negative term: lr 0.2 diverges at this size within 50 steps
        c.train.learning_rate = 0.1
    out = arms.run(c, None, verbose=False)["arms"]["complementary_mask"]
    for k in MEASURES:
        assert np.isfinite(out[k]), k
    width = arms.validate(toy()).model.width
    assert 0 < out["effective_rank"] <= width and out["collapsed"] == (out["effective_rank"] < 2)


def test_an_interrupted_byol_run_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    c = toy()
    whole = arms.run(c, str(tmp_path / "whole"), verbose=False)["arms"]["complementary_mask"]
    original, saves = checkpoint.Checkpointer.maybe_save, []

    class Killed(Exception):
        pass

    def maybe_save(self, step, state, **kw):
        saved = original(self, step, state, **kw)
        saves.append(step)
        if step == 50:
            raise Killed
        return saved

    monkeypatch.setattr(checkpoint.Checkpointer, "maybe_save", maybe_save)
    with pytest.raises(Killed):
        arms.run(c, str(tmp_path / "resumed"), verbose=False)
    monkeypatch.setattr(checkpoint.Checkpointer, "maybe_save", original)
    resumed = arms.run(c, str(tmp_path / "resumed"), verbose=False)["arms"]["complementary_mask"]
    whole.pop("seconds"), resumed.pop("seconds")
    assert resumed == whole
    with np.load(tmp_path / "whole" / "weights.npz") as a, np.load(tmp_path / "resumed" / "weights.npz") as b:
        np.testing.assert_array_equal(a["w_complementary_mask"], b["w_complementary_mask"])
    rows = lambda d: (tmp_path / d / "complementary_mask" / "metrics.jsonl").read_text()  # noqa: E731
    assert rows("resumed") == rows("whole") and [json.loads(r)["step"] for r in rows("whole").splitlines()] == [50, 100]


@pytest.mark.parametrize(
    "field, value",
    [("objective.ema_momentum", 1.0), ("objective.predictor_layers", 0), ("objective.vicreg_variance", -1.0)],
)
def test_bad_learner_values_are_refused_in_one_line(field, value):
    c = toy()
    c.update_from_flattened_dict({field: value})
    with pytest.raises(ValueError, match=f"config.{field} must be") as err:
        arms.validate(c)
    assert "\n" not in str(err.value)


def test_a_collapsed_network_is_reported_collapsed():
    c = arms.validate(toy("info_nce"))
    model = task.make_model(c)
    model.w[...] = np.tile(model.w[...][:1], (c.model.width, 1))  # every neuron the same: rank one
    out = results.measure(c, "complementary_mask", model, task.make_dictionary(c))
    assert out["collapsed"] and out["effective_rank"] == pytest.approx(1.0, abs=1e-3)


def test_ema_copy_and_update_of_a_head_with_batchnorm_by_hand():
    online = heads.ProjectionHead(4, 6, 3, 2, rngs=nnx.Rngs(0))
    target = heads.ema_copy(online)
    assert len(jax.tree.leaves(nnx.state(target, nnx.Param))) == 0
    before = {k: np.asarray(v, np.float64) for k, v in nnx.to_flat_state(nnx.state(target, heads.EMATarget))}
    stats = jax.tree.leaves(nnx.state(target, nnx.BatchStat))
    assert len(stats) == 2  # the BatchNorm's running mean and variance stay what they were
    nnx.update(online, jax.tree.map(lambda v: v + 1.0, nnx.state(online, nnx.Param)))  # each 1 from the target's
    heads.ema_update(target, online, 0.75)
    for k, v in nnx.to_flat_state(nnx.state(target, heads.EMATarget)):
        np.testing.assert_allclose(np.asarray(v), before[k] + 0.25, rtol=1e-6, atol=1e-6)
