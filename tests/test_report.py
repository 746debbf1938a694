"""`python -m experiments.report` rebuilds a run's table and figures from its workdir; run_info.json; the
run's TensorBoard files hold the scalars of metrics.jsonl and the figures."""

import json
import os
import shutil
import subprocess
import sys
import tomllib

import jax
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cl_features.image_training import trainer
from cl_features.jsonio import read_jsonl
from cl_features.report import images as images_report
from cl_features.report import kinds, run_info
from cl_features.report import synthetic as synthetic_report
from cl_features.synthetic import arms
from experiments.configs import photos_simclr_tiny
from experiments.configs import synthetic as synthetic_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = ("complementary_mask", "none")
FIGURES = ("recovery.png", "cosines.png", "decoupling.png")


def toy_config():
    c = synthetic_config.get_config()
    c.arms = ",".join(ARMS)
    c.data.d, c.data.d1 = 8, 32
    c.model.bias_ramp_steps = 20
    c.train.steps, c.train.batch_size, c.train.steps_per_call, c.train.log_every = 40, 32, 10, 20
    c.measure.num_samples = 64
    return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    summary = arms.run(toy_config(), workdir, verbose=False)
    return workdir, summary


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_report_command_reproduces_table_and_figures(finished, tmp_path):
    workdir = str(tmp_path / "copy")
    shutil.copytree(finished[0], workdir)
    table = open(os.path.join(workdir, "summary.md"), "rb").read()
    images = {name: pixels(os.path.join(workdir, name)) for name in FIGURES}
    inputs = {name: open(os.path.join(workdir, name), "rb").read() for name in ("summary.json", "weights.npz")}
    for name in ("summary.md", *FIGURES):
        os.remove(os.path.join(workdir, name))

    proc = subprocess.run(
        [sys.executable, "-m", "experiments.report", f"--workdir={workdir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert open(os.path.join(workdir, "summary.md"), "rb").read() == table
    assert table.decode() in proc.stdout and "missing" not in proc.stdout
    for name in FIGURES:
        path = os.path.join(workdir, name)
        assert os.path.getsize(path) > 0
        np.testing.assert_array_equal(pixels(path), images[name], err_msg=name)
    # Nothing was recomputed: the run's own outputs are untouched, no new metric rows.
    for name, data in inputs.items():
        assert open(os.path.join(workdir, name), "rb").read() == data
    for arm in ARMS:
        assert len(read_jsonl(os.path.join(workdir, arm, "metrics.jsonl"))) == 2


def test_interrupted_run_gets_curves_and_says_what_is_missing(finished, tmp_path):
    """A run stopped during its second arm: run_info.json and the first arm's metrics only."""
    src, workdir = finished[0], str(tmp_path)
    shutil.copy(os.path.join(src, "run_info.json"), workdir)
    shutil.copytree(os.path.join(src, ARMS[0]), os.path.join(workdir, ARMS[0]))
    out = kinds.make_report(workdir)
    assert sorted(out.written) == ["progress.md", "recovery.png"]
    assert not os.path.exists(os.path.join(workdir, "summary.md"))
    assert pixels(out.written["recovery.png"]).shape == pixels(os.path.join(src, "recovery.png")).shape
    last = read_jsonl(os.path.join(workdir, ARMS[0], "metrics.jsonl"))[-1]
    row = (
        f"| {ARMS[0]} | 40 | 40 | {last['contrastive_loss']:.3f} | {last['recovered_fraction']:.3f} | "
        f"{last['span_share']:.3f} | {last['instance_acc']:.3f} |"
    )
    assert open(out.written["progress.md"]).read().splitlines()[2] == row
    assert len(out.missing) == 2
    assert out.missing[0].startswith("summary.json: the run has not finished")
    assert out.missing[1] == f"{ARMS[1]}/metrics.jsonl: arm {ARMS[1]!r} has logged nothing yet"


def test_finished_run_without_weights_says_so(finished, tmp_path):
    workdir = str(tmp_path / "copy")
    shutil.copytree(finished[0], workdir)
    os.remove(os.path.join(workdir, "weights.npz"))
    out = kinds.make_report(workdir)
    assert "cosines.png" not in out.written and out.missing == ["cosines.png: no weights.npz in the workdir"]


def test_report_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="workdir must be an existing directory"):
        kinds.make_report(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="nothing to report"):
        kinds.make_report(str(tmp_path))
    with pytest.raises(
        ValueError, match=r"kind must be one of \['decoupling', 'images', 'sweep', 'synthetic'\], got 'x'"
    ):
        kinds.make_report(str(tmp_path), kind="x")
    with pytest.raises(ValueError, match="neither summary.json nor metrics.jsonl"):
        kinds.make_report(str(tmp_path), kind="images")


def test_kind_from_run_info_picks_the_report(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setitem(kinds.REPORTS, "probe", lambda workdir, info: seen.append((workdir, info)) or "done")
    monkeypatch.setitem(kinds.REPORTS, "lazy", "cl_features.report.synthetic:progress_table")
    run_info.write_run_info(str(tmp_path), {"steps": 3}, kind="probe", argv=["x"])
    assert kinds.make_report(str(tmp_path)) == "done"
    assert seen[0][0] == str(tmp_path) and seen[0][1]["config"] == {"steps": 3}
    assert kinds.resolve(kinds.REPORTS["lazy"]) is synthetic_report.progress_table


def test_run_records_run_info(finished):
    workdir, summary = finished
    info = run_info.read_run_info(workdir)
    assert info["kind"] == "synthetic" and info["config"] == summary["config"]
    assert info["jax_version"] == jax.__version__ and info["device_count"] == len(jax.devices())
    assert info["devices"] == [str(d) for d in jax.devices()] and info["process_count"] == 1
    assert info["package_version"] == run_info.package_version()
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "cl_features/__init__.py"], cwd=ROOT, capture_output=True, text=True
    )
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0 and head.returncode == 0:  # a checkout of this repository
        assert info["git_commit"] == head.stdout.strip() and isinstance(info["git_dirty"], bool)
    assert "previous_starts" not in info


def scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    tb = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    tb.Reload()
    return {tag: [(e.step, e.value) for e in tb.Scalars(tag)] for tag in tb.Tags()["scalars"]}


def test_run_writes_tensorboard_scalars_and_figures(finished):
    workdir, summary = finished
    c = summary["config"]["train"]
    for arm in ARMS:
        rows = read_jsonl(os.path.join(workdir, arm, "metrics.jsonl"))
        series = scalars(os.path.join(workdir, arm))
        assert set(series) == set(rows[0]) - {"step"} | {"learning_rate", "examples_per_second"}
        for tag in set(rows[0]) - {"step"}:
            assert [s for s, _ in series[tag]] == [r["step"] for r in rows]
            got = [v for _, v in series[tag]]
            np.testing.assert_array_equal(np.float32(got), np.float32([r[tag] for r in rows]), err_msg=tag)
        # cosine_tail: constant, then a cosine to 0 over the last quarter (10 of 40 steps); the rate of the
        # row's last step (step - 1).
        lr = [c["learning_rate"] * (1 if s <= 30 else 0.5 * (1 + np.cos(np.pi * (s - 30) / 10))) for s in (19, 39)]
        assert series["learning_rate"] == [(20, pytest.approx(lr[0])), (40, pytest.approx(lr[1], rel=1e-6))]
        assert [s for s, _ in series["examples_per_second"]] == [20, 40]
        assert all(v > 0 for _, v in series["examples_per_second"])
    tb = EventAccumulator(workdir, size_guidance={"images": 0})
    tb.Reload()
    assert set(tb.Tags()["images"]) == {"recovery", "cosines", "decoupling"}
    for tag in tb.Tags()["images"]:
        (image,) = tb.Images(tag)
        assert image.step == summary["config"]["train"]["steps"]
        assert (image.height, image.width) == pixels(os.path.join(workdir, f"{tag}.png")).shape[:2]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    c = photos_simclr_tiny.get_config()
    c.data.photos_crops_per_image, c.eval.batch_size, c.probe.max_iter = 8, 64, 20
    c.train.batch_size, c.train.steps, c.train.log_every, c.eval.every_steps = 32, 4, 2, 2
    workdir = str(tmp_path_factory.mktemp("images"))
    return workdir, trainer.run(c, workdir, verbose=False)


def test_image_run_report_and_tensorboard(image_run, tmp_path):
    workdir, summary = image_run
    rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows] == [0, 2, 4, 4]  # initial scores, two logged rows, the final probe
    keys = images_report.panels(rows)
    assert keys["Held-out accuracy"] == ["knn_acc", "linear_probe_acc", "online_probe_acc"]
    assert keys["Training loss"] == ["contrastive_loss", "loss", "online_probe_loss"]
    assert keys["Training-batch accuracy"] == ["contrast_acc", "online_probe_train_acc"]
    table = open(os.path.join(workdir, "summary.md")).read()  # drawn by the run itself
    assert f"| knn_acc | {summary['knn_acc_init']:.4f} | {summary['knn_acc']:.4f} |" in table
    assert f"| linear_probe_acc | {summary['linear_probe_acc_init']:.4f} | {summary['linear_probe_acc']:.4f} |" in table
    assert f"| num_classes | {summary['num_classes']} |" in table
    height, width, _ = pixels(os.path.join(workdir, "curves.png")).shape
    assert (height, width) == (396, 1452)  # three panels of 4.4 x 3.6 inches at 110 dpi

    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    os.remove(os.path.join(copy, "curves.png"))
    out = kinds.make_report(copy)
    assert sorted(out.written) == ["curves.png", "summary.md"] and not out.missing
    assert open(out.written["summary.md"]).read() == table
    np.testing.assert_array_equal(pixels(out.written["curves.png"]), pixels(os.path.join(workdir, "curves.png")))
    os.remove(os.path.join(copy, "summary.json"))  # a run that has not finished: the curves so far
    out = kinds.make_report(copy)
    assert list(out.written) == ["curves.png"] and out.missing[0].startswith("summary.json: the run has not finished")

    # TensorBoard: the learning rate of each row's last step (linear warmup, then cosine to 0 at the end) and
    # the throughput, next to the logged scalars.
    series = scalars(workdir)
    peak, warmup = summary["learning_rate"], summary["warmup_steps"]
    lr = lambda s: peak * s / warmup if s < warmup else peak * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (4 - warmup)))
    assert series["learning_rate"] == [(2, pytest.approx(lr(1))), (4, pytest.approx(lr(3), abs=1e-7))]
    assert [s for s, _ in series["examples_per_second"]] == [2, 4]
    assert all(v > 0 for _, v in series["examples_per_second"])


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state(tmp_path):
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    assert run_info.git_state(str(pkg)) == ("unknown", None)  # not inside a repository that tracks it
    repo = str(tmp_path / "repo")
    _git(repo, "init", "-q")
    assert run_info.git_state(str(pkg)) == ("unknown", None)  # in a repository, but not tracked there
    _git(repo, "add", "pkg/__init__.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = _git(repo, "rev-parse", "HEAD")
    assert run_info.git_state(str(pkg)) == (head, False)
    (pkg / "__init__.py").write_text("x = 2\n")
    assert run_info.git_state(str(pkg)) == (head, True)


def test_run_info_resume_and_process_rules(tmp_path, monkeypatch):
    first = run_info.write_run_info(str(tmp_path), {"a": 1}, kind="synthetic", argv=["first"])
    second = run_info.write_run_info(str(tmp_path), {"a": 1}, kind="synthetic", argv=["second"])
    stored = json.load(open(tmp_path / "run_info.json"))
    assert stored == second and stored["command"] == ["second"]
    assert stored["previous_starts"] == [{k: first[k] for k in run_info.START_FIELDS}]
    with pytest.raises(ValueError, match="holds a 'synthetic' run"):
        run_info.write_run_info(str(tmp_path), {}, kind="images")
    with pytest.raises(ValueError, match="kind must be a non-empty string"):
        run_info.write_run_info(str(tmp_path), {}, kind="")
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert run_info.write_run_info(str(tmp_path / "other"), {}, kind="synthetic") is None
    assert not (tmp_path / "other").exists()


def test_tensorboard_is_an_extra():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["tensorboard"]] == ["tensorboard"]
