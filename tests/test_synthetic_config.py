"""Bad config values stop before any compilation with one line naming the field."""

import subprocess
import sys

import jax
import pytest

from cl_features.synthetic import arms
from experiments.configs import synthetic as synthetic_config

BAD = [
    ("data.d1", 8, "data.d1"),  # d1 < d
    ("data.sparsity", 0.0, "data.sparsity"),
    ("data.sparsity", 1.5, "data.sparsity"),
    ("data.sigma", -0.1, "data.sigma"),
    ("data.dictionary", "dct", "data.dictionary"),
    ("objective.temperature", 0.0, "objective.temperature"),
    ("objective.name", "triplet", "objective.name"),
    ("train.batch_size", 1, "train.batch_size"),
    ("train.steps", 0, "train.steps"),
    ("train.learning_rate", -1.0, "train.learning_rate"),
    ("train.optimizer", "rmsprop", "train.optimizer"),
    ("train.log_every", 7, "train.log_every"),
    ("model.width", 0, "model.width"),
    ("model.bias", "adaptive", "model.bias"),
    ("augment.keep_prob", 0.0, "augment.keep_prob"),
    ("arms", "complementary_mask,cutout", "arms"),
    ("arms", "", "arms"),
    ("measure.threshold", 1.5, "measure.threshold"),
]


@pytest.mark.parametrize("field,value,match", BAD)
def test_bad_values_are_refused_before_compiling(field, value, match, monkeypatch):
    config = synthetic_config.get_config()
    config.data.d = 16
    config.update_from_flattened_dict({field: value})

    def no_jit(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_jit)
    with pytest.raises(ValueError, match=match) as err:
        arms.run(config, workdir=None, verbose=False)
    assert "\n" not in str(err.value)


def test_default_config_is_valid_and_resolved():
    c = arms.validate(synthetic_config.get_config())
    assert c.model.width == 4 * c.data.d
    assert c.data.sparsity == pytest.approx(3.0 / c.data.d)
    assert arms.arm_names(c) == ["complementary_mask", "none", "gaussian_noise", "independent_mask"]


def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.synthetic", f"--workdir={tmp_path}", "--config.objective.temperature=-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "error: config.objective.temperature must be > 0, got -1" in proc.stderr
    assert not any(tmp_path.iterdir())
