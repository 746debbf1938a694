"""The report figures as drawn: no label cut by the canvas or over another panel; recovery.png with markers, the
threshold's value and a zero loss; summary.md in the config's arm order; the phase diagram of a sweep over several
objectives. Inputs are written by hand (no run)."""

import json
import os

import numpy as np
import pytest
from figure_checks import layout_problems
from test_decoupling_images import _fake_models, _fake_table

from cl_features.report import decoupling, images, phase
from cl_features.report import synthetic as synthetic_report

ARMS = ("none", "complementary_mask", "independent_mask", "gaussian_noise", "dense_mask")  # config order


@pytest.fixture
def synthetic_workdir(tmp_path):
    """Five arms; independent_mask logged one row only, dense_mask reached a loss of exactly 0."""
    rng = np.random.default_rng(0)
    d, d1, m = 8, 32, 32
    dictionary = np.linalg.qr(rng.normal(size=(d1, d)))[0]  # [d1, d], orthonormal atoms
    np.savez(tmp_path / "weights.npz", dictionary=dictionary, **{f"w_{a}": rng.normal(size=(m, d1)) for a in ARMS})
    result = {k: 0.5 for k in synthetic_report.COLUMNS} | {"steps": 40, "seconds": 1.5}
    summary = {"arms": {a: dict(result, final_loss=i + 0.5) for i, a in enumerate(ARMS)}, "config": {}}
    summary["config"] = {"arms": ",".join(ARMS), "measure": {"threshold": 0.85}}
    for arm in ARMS:
        os.makedirs(tmp_path / arm)
        steps = [40] if arm == "independent_mask" else [10, 20, 30, 40]
        losses = [2.0, 1.0, 0.5, 0.0] if arm == "dense_mask" else [3.0 / s for s in steps]
        with open(tmp_path / arm / "metrics.jsonl", "w") as f:
            for s, loss in zip(steps, losses):
                f.write(json.dumps({"step": s, "contrastive_loss": loss, "recovered_fraction": s / 40}) + "\n")
    with open(tmp_path / "summary.json", "w") as f:
        json.dump(summary, f, sort_keys=True)  # as the run writes it: the arms sorted by name
    return str(tmp_path), summary


def test_synthetic_figures_lay_out_and_show_every_logged_point(synthetic_workdir):
    workdir, summary = synthetic_workdir
    fig = synthetic_report._recovery_figure(workdir, list(ARMS), os.path.join(workdir, "recovery.png"), 0.85)
    assert layout_problems(fig) == []
    recovered, loss = fig.axes
    assert recovered.get_ylabel() == "fraction of atoms with max |cos| >= 0.85"
    assert all(line.get_marker() == "o" for line in recovered.lines + loss.lines)
    single = recovered.lines[ARMS.index("independent_mask")]
    assert list(single.get_xdata()) == [40]
    # The zero loss is drawn at a floor a tenth of the smallest positive loss (0.075), and the label says so.
    assert loss.get_yscale() == "log" and loss.get_ylabel() == "contrastive loss (log scale; 0 drawn at 0.0075)"
    np.testing.assert_allclose(loss.lines[ARMS.index("dense_mask")].get_ydata(), [2.0, 1.0, 0.5, 0.0075])
    with np.load(os.path.join(workdir, "weights.npz")) as w:
        fig = synthetic_report._cosine_figure(dict(w), list(ARMS), os.path.join(workdir, "cosines.png"))
    assert layout_problems(fig) == []
    assert [ax.get_title() for ax in fig.axes[: len(ARMS)]] == list(ARMS)
    fig = synthetic_report._decoupling_figure(summary, os.path.join(workdir, "decoupling.png"))
    assert layout_problems(fig) == []
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(ARMS)


def test_negative_losses_get_a_linear_axis(synthetic_workdir, tmp_path):
    workdir, _ = synthetic_workdir
    with open(os.path.join(workdir, "none", "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 50, "contrastive_loss": -0.9, "recovered_fraction": 1.0}) + "\n")
    fig = synthetic_report._recovery_figure(workdir, list(ARMS), str(tmp_path / "r.png"))
    assert fig.axes[1].get_yscale() == "linear" and fig.axes[1].get_ylabel() == "contrastive loss"
    assert fig.axes[0].get_ylabel() == "fraction of atoms with max |cos| >= threshold"  # no config: no value


def test_summary_lists_the_arms_in_config_order(synthetic_workdir):
    workdir, _ = synthetic_workdir
    written = synthetic_report.write_report(workdir)
    rows = open(written["summary.md"]).read().splitlines()[2:]
    assert [r.split("|")[1].strip() for r in rows] == list(ARMS)


def test_decoupling_and_image_figures_lay_out(tmp_path):
    sets = ("none", "crop", "crop_flip", "crop_flip_color", "simclr")
    mf = {s: _fake_table(1.0 - i / 8, 0.9, 0.8, 0.7, 0.6) for i, s in enumerate(sets)}
    assert layout_problems(decoupling.model_free_figure(mf, str(tmp_path / "m.png"))) == []
    models = _fake_models()
    for row in models["crop"]["layers"].values():  # (one table shared by the models) a long view-set name
        row["corr/crop_flip_color"] = row.pop("corr/simclr")
    for name in ("none", "crop_flip", "crop_flip_color", "supervised_crop_flip"):  # as many as a study trains
        models[name] = dict(models["simclr"], train_set=name)
    assert layout_problems(decoupling.representation_figure(models, str(tmp_path / "r.png"))) == []
    rows = [{"step": 0, "knn_acc": 0.3}] + [
        {"step": s, "loss": 4 - s / 50, "contrastive_loss": 3 - s / 50, "contrast_acc": s / 200, "knn_acc": s / 300}
        for s in (50, 100, 150, 200)
    ]
    fig = images.curves(rows, str(tmp_path / "c.png"), num_classes=10)
    assert layout_problems(fig) == []
    assert [ax.get_title() for ax in fig.axes] == ["Training loss", "Held-out accuracy", "Training-batch accuracy"]


def test_the_phase_diagram_of_several_objectives_lays_out(tmp_path):
    """Five objectives of one augmentation at one point and two seeds (the learners sweep's shape), and a 2-D grid."""
    objectives = ["info_nce", "spectral_contrastive", "vicreg", "simsiam", "byol"]
    for x, y in [([0.5], None), ([0.25, 0.5, 1.0], [1.5, 2.5])]:
        runs = [
            {
                "values": {"arm": "complementary_mask", "objective.name": o, "data.sigma": s, "seed": k}
                | ({"model.bias_c": b} if y else {}),
                "results": {"recovered_fraction": 0.5, "probe_accuracy": 0.7, "diverged_at": 100 * (o == "vicreg")},
            }
            for o in objectives
            for s in x
            for b in y or [None]
            for k in (0, 1)
        ]
        sweep = {
            "config": {"sweep": {"seeds": 2}},
            "axes": {"x": {"field": "data.sigma", "values": x}, "y": y and {"field": "model.bias_c", "values": y}},
            "panels": [{"arm": "complementary_mask", "objective": o} for o in objectives],
            "runs": runs,
        }
        fig = phase._figure(sweep, str(tmp_path / "phase_diagram.png"))
        assert layout_problems(fig) == []
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles == [f"complementary_mask\n{o}" for o in objectives]  # over the top row only
        assert [ax.get_ylabel() for ax in fig.axes[-2:]] == list(phase.METRICS)  # the colour bars name the rows
