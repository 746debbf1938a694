"""The real experiment loop at toy size: masking recovers the atoms, no augmentation does not."""

import json

import numpy as np
import pytest

from cl_features.report import synthetic as synthetic_report
from cl_features.synthetic import arms
from experiments.configs import synthetic as synthetic_config


def toy_config(steps=1500, arms="complementary_mask,none"):
    c = synthetic_config.get_config()
    c.arms = arms
    c.data.d, c.data.d1, c.data.sparsity, c.data.sigma = 16, 128, 0.1, 0.3
    c.model.bias_ramp_steps = 300
    c.train.batch_size = 256
    c.train.steps = steps
    c.train.steps_per_call = 50
    c.train.log_every = 250
    c.measure.num_samples = 2048
    return c


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("toy")
    return arms.run(toy_config(), str(workdir), verbose=False), workdir


def test_masking_recovers_atoms_and_none_memorises_noise(toy_run):
    summary, _ = toy_run
    mask, none = summary["arms"]["complementary_mask"], summary["arms"]["none"]
    assert mask["recovered_fraction"] >= 0.9
    assert none["recovered_fraction"] <= 0.1
    assert none["final_loss"] < mask["final_loss"]  # the dense part makes instances easy to tell apart
    assert abs(mask["dense_corr"]) < 0.1 and none["dense_corr"] > 0.95
    assert mask["sparse_corr"] > 0.5
    assert mask["span_share"] > none["span_share"] + 0.3
    assert mask["probe_accuracy"] > none["probe_accuracy"]
    # Measured decoupling agrees with the closed form for the learned weights.
    assert abs(mask["dense_corr"] - mask["dense_corr_predicted"]) < 0.05
    assert abs(mask["sparse_corr"] - mask["sparse_corr_predicted"]) < 0.1


def test_workdir_outputs(toy_run):
    summary, workdir = toy_run
    written = json.loads((workdir / "summary.json").read_text())
    assert set(written["arms"]) == {"complementary_mask", "none"}
    for arm in written["arms"].values():
        assert set(synthetic_report.COLUMNS) <= set(arm)
    with np.load(workdir / "weights.npz") as w:
        assert w["w_complementary_mask"].shape == (64, 128)
        assert w["dictionary"].shape == (128, 16)
    table = (workdir / "summary.md").read_text()
    assert table.count("\n") == 4 and "complementary_mask" in table and "| effective_rank |" in table
    for name in ("recovery.png", "cosines.png", "decoupling.png"):
        assert (workdir / name).stat().st_size > 5000
    rows = [json.loads(line) for line in (workdir / "none" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(250, 1501, 250))


def test_same_seed_same_numbers():
    c = toy_config(steps=200, arms="complementary_mask")
    a = arms.run(c, None, verbose=False)["arms"]["complementary_mask"]
    b = arms.run(c, None, verbose=False)["arms"]["complementary_mask"]
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    c.seed = 1
    other = arms.run(c, None, verbose=False)["arms"]["complementary_mask"]
    assert other["final_loss"] != a["final_loss"]


def test_nt_xent_run_logs_strict_json_without_instance_acc(tmp_path):
    """NT-Xent has no [batch, batch] logits of the paper's form: no instance_acc; every value finite, strict JSON."""
    c = toy_config(steps=200, arms="none")
    c.objective.name, c.train.log_every = "nt_xent", 50

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    arms.run(c, str(tmp_path), verbose=False)
    lines = (tmp_path / "none" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [r["step"] for r in rows] == [50, 100, 150, 200]
    assert all("instance_acc" not in r and np.isfinite(r["contrastive_loss"]) for r in rows)
