"""Model-free decoupling on constructed views with known answers, the report folder, and the experiment."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from cl_features.measure import correlation as C
from cl_features.measure import image_stats as S
from cl_features.measure import model_free as MF
from cl_features.measure import patch_codes as P
from cl_features.report import decoupling as report

# A 6x6 plus sign: a local pattern no smooth background produces by chance.
PLUS = np.zeros((6, 6), np.float32)
PLUS[2:4, :] = 1.0
PLUS[:, 2:4] = 1.0
LUMA = np.array([0.299, 0.587, 0.114])


def _plain_dictionary(atoms, patch_size=6):
    """A PatchDictionary with no whitening (mean 0, identity) and unit-norm atoms [n_atoms, patch_dim]."""
    atoms = np.asarray(atoms, np.float64)
    atoms = atoms / np.linalg.norm(atoms, axis=1, keepdims=True)
    d = atoms.shape[1]
    return P.PatchDictionary(mean=np.zeros(d), whitening=np.eye(d), atoms=atoms, patch_size=patch_size)


def _plus_atom():
    """The contrast-normalised PLUS pattern, the same in the three channels, as a [1, 108] atom."""
    p = np.repeat(PLUS[..., None], 3, axis=-1).reshape(1, -1)
    return p - p.mean()


def _gray_structured(n, size, rng):
    """[n, size, size, 3]: grey patterns (PLUS or its transpose-free square) at random places on grey, plus
    a per-image colour offset per channel. The structure is grey; the colour is a dense, global tint."""
    gray = np.full((n, size, size), 0.5, np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(0, size - 5, 2)
            gray[i, r : r + 6, c : c + 6] += rng.choice([-0.25, 0.25]) * PLUS
    offset = rng.uniform(-0.2, 0.2, size=(n, 1, 1, 3)).astype(np.float32)
    return np.clip(gray[..., None] + offset, 0.0, 1.0)


def _permute_channels(images, rng):
    perms = np.stack([rng.permutation(3) for _ in range(len(images))])
    return np.take_along_axis(images, perms[:, None, None, :], axis=-1)


# ------------------------------------------------------------------------------------------ model-free


def test_luminance_images_repeat_rec601_luma():
    x = np.random.default_rng(0).random((2, 5, 4, 3)).astype(np.float32)
    y = MF.luminance_images(x)
    np.testing.assert_allclose(y[..., 0], x @ LUMA, atol=1e-6)
    np.testing.assert_array_equal(y[..., 0], y[..., 1])
    np.testing.assert_array_equal(y[..., 0], y[..., 2])
    with pytest.raises(ValueError, match="images"):
        MF.luminance_images(x[..., :2])


def test_rows_are_the_statistics_cross_view_correlations_and_identical_views_give_one():
    rng = np.random.default_rng(0)
    x = _gray_structured(40, 16, rng)
    v2 = _permute_channels(x, rng)
    dictionary = P.fit_patch_dictionary(x, patch_size=4, n_atoms=8, n_patches=2000, iters=5)
    ours = MF.view_table(x, v2, {"rgb": dictionary}, bins=4, k=3)
    s1, s2 = ({**S.dense_statistics(v, bins=4, k=3), **P.sparse_statistics(v, dictionary)} for v in (x, v2))
    ref = {}
    for name in S.DENSE_STATS + P.SPARSE_STATS:
        summ = C.summary(C.cross_view_correlation(s1[name], s2[name]))
        ref[name] = {"corr_mean": summ["mean"], "corr_median": summ["median"], "n_dims": summ["n_dims"]}
    for name in S.DENSE_STATS:
        assert ours["stats"][name] == pytest.approx(ref[name])
    for name in P.SPARSE_STATS:
        assert ours["stats"][f"{name}/rgb"] == pytest.approx(ref[name])
    dense = np.mean([ref[n]["corr_mean"] for n in S.DENSE_STATS])
    sparse = np.mean([ref[n]["corr_mean"] for n in P.SPARSE_STATS])
    assert ours["dense_mean"] == pytest.approx(dense) and ours["sparse_mean"]["rgb"] == pytest.approx(sparse)
    assert ours["ratio"]["rgb"] == pytest.approx(dense / sparse) and dense / sparse < 0.9

    same = MF.view_table(x, x, {"rgb": dictionary, "luminance": dictionary}, bins=4, k=3)
    for row in same["stats"].values():
        assert row["corr_mean"] == pytest.approx(1.0)
    assert same["dense_mean"] == pytest.approx(1.0)
    assert same["ratio"] == pytest.approx({"rgb": 1.0, "luminance": 1.0})


def test_permuted_colours_lose_colour_correlation_but_not_luminance_patterns():
    """Views that permute each image's channels independently: the colour statistics decorrelate, the grey
    structure (a constant luminance shift per image, removed by contrast normalisation) does not. The RGB
    dictionary's codes, which see the channel offsets, lose more than the luminance dictionary's."""
    rng = np.random.default_rng(1)
    x = _gray_structured(300, 16, rng)
    v1, v2 = _permute_channels(x, rng), _permute_channels(x, rng)
    dictionaries = MF.fit_dictionaries(x, patch_size=6, n_atoms=8, n_patches=4000, iters=10)
    t = MF.view_table(v1, v2, dictionaries, bins=4, k=3)
    assert t["stats"]["mean_colour"]["corr_mean"] < 0.6  # 1/3 expected from the tint, plus the shared grey
    assert t["stats"]["colour_histogram"]["corr_mean"] < 0.6
    assert t["sparse_mean"]["luminance"] > 0.97
    assert t["sparse_mean"]["rgb"] < t["sparse_mean"]["luminance"] - 0.05
    assert t["ratio"]["luminance"] < 0.8


def test_a_planted_atom_keeps_its_sparse_correlation_under_moves_and_recolouring():
    """Half the images hold the PLUS pattern (the same half in both views) at places drawn independently per
    view; each view has its own random flat colour. The atom's max-pooled luminance code keeps correlation
    ~1; the colour statistics have none."""
    rng = np.random.default_rng(2)
    n, size = 200, 16
    present = rng.random(n) < 0.5
    views = []
    for _ in range(2):
        v = np.broadcast_to(rng.uniform(0.2, 0.6, (n, 1, 1, 3)), (n, size, size, 3)).astype(np.float32).copy()
        for i in np.flatnonzero(present):
            r, c = rng.integers(0, size - 5, 2)
            v[i, r : r + 6, c : c + 6] += 0.3 * PLUS[..., None]
        views.append(v)
    dictionary = _plain_dictionary(_plus_atom())
    t = MF.view_table(views[0], views[1], {"luminance": dictionary}, bins=4, k=3, threshold=1.0)
    assert t["stats"]["patch_codes_max/luminance"]["corr_mean"] > 0.99
    assert abs(t["stats"]["mean_colour"]["corr_mean"]) < 0.2
    assert t["ratio"]["luminance"] < 0.5


def test_make_views_do_not_depend_on_batching_and_none_is_identity():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    key = jax.random.key(0)
    a1, a2 = MF.make_views(key, x, "crop_flip_color", 16, batch_size=3)
    b1, b2 = MF.make_views(key, x, "crop_flip_color", 16, batch_size=8)
    np.testing.assert_allclose(a1, b1, atol=1e-6)
    np.testing.assert_allclose(a2, b2, atol=1e-6)
    assert not np.allclose(a1, a2)
    n1, n2 = MF.make_views(key, x, "none", 16, batch_size=8)
    np.testing.assert_allclose(n1, x / 255.0, atol=1e-6)
    np.testing.assert_allclose(n2, x / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="augmentation set"):
        MF.make_views(key, x, "cutout", 16)
    with pytest.raises(ValueError, match="dictionaries"):
        MF.view_table(n1, n2, {"hsv": None})


# ---------------------------------------------------------------------------------------------- report


def _fake_table(dense, colour, lf, rgb, lum):
    stats = {"mean_colour": colour, "colour_histogram": colour, "low_frequency_energy": lf}
    stats = {k: {"corr_mean": v, "corr_median": v, "n_dims": 3} for k, v in stats.items()}
    for kind, val in (("rgb", rgb), ("luminance", lum)):
        for s in P.SPARSE_STATS:
            stats[f"{s}/{kind}"] = {"corr_mean": val, "corr_median": val, "n_dims": 8}
    return {
        "stats": stats,
        "dense_mean": dense,
        "sparse_mean": {"rgb": rgb, "luminance": lum},
        "ratio": {"rgb": dense / rgb, "luminance": dense / lum},
        "num_images": 50,
    }


def _fake_models():
    layers = {
        "stem": {
            "channels": 8,
            "density": 0.5,
            "image_density_std": 0.1,
            "dense_units": 0.25,
            "dead_units": 0.0,
            "corr/simclr": 0.7,
            "corr_median/simclr": 0.7,
        },
        "features": {"channels": 64, "corr/simclr": 0.9, "corr_median/simclr": 0.9},
    }
    return {
        "crop": {"train_set": "crop", "scores": {"dense_reliance": 0.6, "knn_acc": 0.5}, "layers": layers},
        "simclr": {"train_set": "simclr", "scores": {"dense_reliance": 0.2, "knn_acc": 0.7}, "layers": layers},
        "supervised": {"train_set": "supervised:crop_flip", "scores": {"dense_reliance": 0.4}, "layers": layers},
    }


def test_tables_hold_the_numbers():
    mf = {"none": _fake_table(1.0, 1.0, 1.0, 1.0, 1.0), "crop_flip_color": _fake_table(0.4, 0.3, 0.6, 0.6, 0.48)}
    mf["crop_flip_color"]["dense_mean_ci"] = [0.35, 0.45]
    mf["crop_flip_color"]["sparse_mean_ci"] = {"luminance": [0.4, 0.5]}
    header, rule, *rows = report.model_free_markdown(mf).splitlines()
    assert header == (
        "| augmentation | images | mean_colour | colour_histogram | low_frequency_energy | dense mean "
        "| codes max (rgb) | codes mean (rgb) | sparse mean (rgb) | dense / sparse (rgb) | codes max (luminance) "
        "| codes mean (luminance) | sparse mean (luminance) | dense / sparse (luminance) |"
    )
    assert rule == "|" + "---|" * 14
    assert rows == [
        "| none | 50 | " + " | ".join(["1.000"] * 12) + " |",
        "| crop_flip_color | 50 | 0.300 | 0.300 | 0.600 | 0.400 [0.350, 0.450] | 0.600 | 0.600 | 0.600 | 0.667 "
        "| 0.480 | 0.480 | 0.480 [0.400, 0.500] | 0.833 |",
    ]
    many = {k: dict(t, seeds={"seeds": [0, 1], "sd": {"dense_mean": 0.01}}) for k, t in mf.items()}
    header, _, first, _ = report.model_free_markdown(many).splitlines()
    assert header.endswith("| sd over seeds: dense | sd over seeds: sparse (rgb) | sd over seeds: sparse (luminance) |")
    assert first.endswith("| 0.010 | - | - |")
    md = report.representation_markdown(_fake_models())
    assert "| model | trained with | dense_reliance | knn_acc |" in md
    assert "| simclr | simclr | 0.200 | 0.700 |" in md and "| supervised | supervised:crop_flip | 0.400 | - |" in md
    assert "| crop | stem | 8 | 0.500 | 0.250 | 0.000 | 0.700 |" in md
    assert "| crop | features | 64 | - | - | - | 0.900 |" in md


def test_write_report_writes_every_table_and_non_empty_figure(tmp_path):
    mf = {"none": _fake_table(1.0, 1.0, 1.0, 1.0, 1.0), "simclr": _fake_table(0.5, 0.4, 0.7, 0.6, 0.55)}
    models = _fake_models()
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    paths = report.write_report(
        str(tmp_path),
        model_free=mf,
        models=models,
        tsne_maps={m: rng.normal(size=(30, 2)) for m in models},
        tsne_labels=labels,
        class_names=["a", "b", "c"],
        vis={m: rng.random((4, 8, 8, 3)) for m in models},
        vis_layer="stage3",
        config={"seed": 0},
    )
    for name in (
        "model_free.json",
        "model_free.md",
        "representation.json",
        "representation.md",
        "summary.md",
        "config.json",
        "model_free.png",
        "representation.png",
        "tsne.png",
        "feature_vis.png",
    ):
        assert os.path.getsize(paths[name]) > (3000 if name.endswith(".png") else 10), name
    assert json.load(open(paths["model_free.json"])) == mf
    assert json.load(open(paths["representation.json"])) == models
    md = open(paths["model_free.md"]).read().splitlines()
    assert len(md) == 2 + len(mf) and md[2].startswith("| none | 50 | 1.000 |")
    summary = open(paths["summary.md"]).read()
    for fig in ("model_free.png", "representation.png", "tsne.png", "feature_vis.png"):
        assert f"figures/{fig}" in summary
    assert "| supervised | supervised:crop_flip | 0.400 |" in summary
    assert summary.endswith("## Files\n\n" + "".join(f"- {os.path.relpath(p, tmp_path)}\n" for p in paths.values()))
    report.redraw(str(tmp_path))  # from the folder alone: the same summary and tables
    assert open(paths["summary.md"]).read() == summary
    assert json.load(open(paths["model_free.json"])) == mf
    # The report command dispatches a decoupling folder to the same redraw.
    from cl_features.report import kinds

    redone = kinds.make_report(str(tmp_path), kind="decoupling")
    assert not redone.missing and os.path.getsize(redone.written["tsne.png"]) > 3000
    assert open(paths["summary.md"]).read() == summary


# ------------------------------------------------------------------------------------------ experiment

from cl_features.decoupling import encoders, study  # noqa: E402
from experiments.configs import decoupling_cifar10, decoupling_photos, decoupling_photos_models, decoupling_tiny  # noqa: E402,E501

BAD = [
    ("data.source", "imagenet_folder", "data.source"),
    ("data.measure_split", "validation", "data.measure_split"),  # photos has train/test only
    ("data.num_images", 8, "data.num_images"),
    ("model_free.sets", "crop,cutout", "model_free.sets"),
    ("model_free.sets", "crop,crop", "model_free.sets"),
    ("model_free.dictionaries", "rgb,hsv", "model_free.dictionaries"),
    ("model_free.patch_size", 40, "model_free.patch_size"),
    ("model_free.n_patches", 4, "model_free.n_patches"),
    ("model_free.color_strength", 2.0, "model_free.color_strength"),
    ("models.source", "hub", "models.source"),
    ("models.checkpoints", "", "models.checkpoints"),
    ("measure.view_sets", "blur", "measure.view_sets"),
    ("measure.dense_unit", 0.0, "measure.dense_unit"),
    ("tsne.perplexity", 5000.0, "tsne.perplexity"),
    ("vis.channels", 0, "vis.channels"),
    ("data.source", "folder", "data.folder_train"),
    ("data.num_images", 8, "data.num_images"),
    ("model_free.seeds", 0, "model_free.seeds"),
    ("model_free.resamples", -1, "model_free.resamples"),
    ("models.seeds", 0, "models.seeds"),
]


@pytest.mark.parametrize("field,value,match", BAD)
def test_bad_config_values_are_refused_before_compiling(field, value, match, monkeypatch):
    config = decoupling_photos.get_config()
    if field == "models.checkpoints":
        config.models.source = "checkpoints"
    config.update_from_flattened_dict({field: value})

    def no_jit(*a, **k):
        raise AssertionError("compiled before validating")

    monkeypatch.setattr(jax, "jit", no_jit)
    with pytest.raises(ValueError, match=f"config.{match}") as err:
        study.run(config, workdir=None, verbose=False)
    assert "\n" not in str(err.value)


def test_shipped_configs_are_valid_and_checkpoint_lists_parse():
    for module in (decoupling_photos, decoupling_photos_models, decoupling_tiny, decoupling_cifar10):
        study.validate(module.get_config())
    c = decoupling_photos.get_config()
    c.models.checkpoints = "runs/a/crop, sup=runs/b/x/"
    assert encoders.checkpoint_dirs(c) == {"crop": "runs/a/crop", "sup": "runs/b/x/"}
    c.models.checkpoints = "a/crop,b/crop"
    with pytest.raises(ValueError, match="distinct names"):
        encoders.checkpoint_dirs(c)


def test_cli_prints_one_error_line():
    r = subprocess.run(
        [sys.executable, "-m", "experiments.decoupling", "--config.model_free.sets=solarize"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("error: config.model_free.sets must be")


@pytest.mark.slow
def test_tiny_run_writes_the_whole_report(tmp_path, monkeypatch):
    """decoupling_tiny end to end: model-free on two sets; the tiny encoder at init and after 10 training steps.
    Killed after its encoder is trained and started again, it trains that encoder no second time."""
    from cl_features.train import checkpoint

    def killed(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(study.measurements, "measure_encoder", killed)
        with pytest.raises(KeyboardInterrupt):
            study.run(decoupling_tiny.get_config(), str(tmp_path), verbose=False)
    assert os.path.exists(tmp_path / "models" / "crop_flip_color" / "seed0" / "metrics.jsonl")

    def no_save(*a, **k):
        raise AssertionError("a finished encoder was trained again")

    monkeypatch.setattr(checkpoint.Checkpointer, "save", no_save)
    out = study.run(decoupling_tiny.get_config(), str(tmp_path), verbose=False)
    mf = out["model_free"]
    assert list(mf) == ["none", "crop_flip_color"]
    for row in mf["none"]["stats"].values():  # identical views
        assert row["corr_mean"] == pytest.approx(1.0)
    assert mf["crop_flip_color"]["stats"]["colour_histogram"]["corr_mean"] < 0.9
    models = out["models"]
    assert list(models) == ["init", "crop_flip_color"]
    assert [m["train_set"] for m in models.values()] == ["init", "crop_flip_color"]
    assert models["crop_flip_color"]["scores"]["train_steps"] == 10
    for model in models.values():
        layers = model["layers"]
        assert list(layers) == ["stem", "stage1", "stage2", "stage3", "stage4", "features"]
        for layer, row in layers.items():
            assert -1 <= row["corr/crop_flip_color"] <= 1
            if layer != "features":
                assert 0 < row["density"] < 1 and 0 <= row["dense_units"] <= 1
        s = model["scores"]
        for key in report.SCORE_COLUMNS:
            assert np.isfinite(s[key]), key
        assert 0 <= s["knn_acc"] <= 1 and 0 <= s["linear_probe_acc"] <= 1
        assert len(model["vis_activation"]) == 4
    # training moved the weights: the representation differs from the initial one
    assert models["init"]["scores"]["dense_reliance"] != models["crop_flip_color"]["scores"]["dense_reliance"]
    assert os.path.getsize(tmp_path / "models" / "crop_flip_color" / "seed0" / "metrics.jsonl") > 0
    files = out["paths"]
    for name in (
        "model_free.json",
        "model_free.md",
        "representation.json",
        "representation.md",
        "summary.md",
        "model_free.png",
        "representation.png",
        "tsne.png",
        "feature_vis.png",
        "pictures.npz",
    ):
        assert os.path.getsize(files[name]) > (3000 if name.endswith(".png") else 100), name
    assert json.load(open(tmp_path / "run_info.json"))["kind"] == "decoupling"
    text = open(files["summary.md"]).read()
    assert "| none | 96 | 1.000 | 1.000 | 1.000 | 1.000 [1.000, 1.000] |" in text and "| init | init | 1 |" in text
    assert "- figures/tsne.png\n" in text


def _write_folder(root, n_per_class, rng):
    from PIL import Image

    for label, tint in enumerate(((1.0, 0.6, 0.6), (0.6, 0.6, 1.0), (0.6, 1.0, 0.6))):
        os.makedirs(root / f"class{label}")
        for i in range(n_per_class):
            img = rng.random((20, 20, 1)) * np.asarray(tint)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / f"class{label}" / f"{i}.png")


def test_an_image_folder_feeds_the_decoupling_experiment(tmp_path, monkeypatch):
    """data.source=folder: every image of the two folders read (num_images None), one pair per measured image,
    a bootstrap interval and a spread over two seeds for every number of model_free.json. Started again, the
    tables come from the workdir; with other measuring code or another model_free field they are measured again."""
    rng = np.random.default_rng(0)
    _write_folder(tmp_path / "train", 8, rng)
    _write_folder(tmp_path / "test", 7, rng)
    c = decoupling_tiny.get_config()
    c.data.source, c.data.folder_train, c.data.folder_test = "folder", str(tmp_path / "train"), str(tmp_path / "test")
    c.data.num_fit_images = c.data.num_images = None
    c.models.source, c.models.include_init = "none", False
    c.model_free.seeds, c.model_free.resamples = 2, 200
    c.model_free.batch_size = 32
    study.run(c, str(tmp_path / "w"), verbose=False)
    tables = json.load(open(tmp_path / "w" / "model_free.json"))
    assert list(tables) == ["none", "crop_flip_color"]
    for t in tables.values():
        assert t["num_images"] == 21
        lo, hi = t["dense_mean_ci"]
        assert lo <= t["dense_mean"] <= hi
        for kind in ("luminance", "rgb"):
            lo, hi = t["sparse_mean_ci"][kind]
            assert lo <= t["sparse_mean"][kind] <= hi
        assert t["seeds"]["seeds"] == [0, 1] and len(t["seeds"]["values"]["dense_mean"]) == 2
    assert tables["none"]["dense_mean"] == pytest.approx(1.0)
    assert tables["crop_flip_color"]["seeds"]["sd"]["dense_mean"] > 0  # the second seed redrew the views

    def measured(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(study.measurements, "model_free_tables", measured)
    study.run(c, str(tmp_path / "w"), verbose=False)
    assert json.load(open(tmp_path / "w" / "model_free.json")) == tables
    monkeypatch.setattr(study, "model_free_code", lambda: "other code")
    with pytest.raises(AssertionError, match="measured again"):
        study.run(c, str(tmp_path / "w"), verbose=False)
    monkeypatch.undo()
    monkeypatch.setattr(study.measurements, "model_free_tables", measured)
    c.model_free.resamples = 100
    with pytest.raises(AssertionError, match="measured again"):
        study.run(c, str(tmp_path / "w"), verbose=False)


def test_run_config_sets_task_augmentation_and_steps():
    c = decoupling_photos.get_config()
    c.models.train_steps = 30
    ic = encoders.run_config(c, "simclr", "crop")
    assert (ic.task, ic.augment.set, ic.train.steps, ic.model.encoder) == ("simclr", "crop", 30, "resnet_tiny")
    sup = encoders.run_config(c, "supervised", "crop_flip")
    assert (sup.task, sup.augment.set, sup.objective.online_probe) == ("supervised", "crop_flip", False)
    c.data.source, c.data.folder_train, c.data.folder_test = "folder", "/data/train", "/data/test"
    ic = encoders.run_config(c, "simclr", "crop", seed=3)
    assert (ic.seed, ic.data.source, ic.data.folder_train, ic.data.folder_test) == (
        3,
        "folder",
        "/data/train",
        "/data/test",
    )


# ------------------------------------------------------------------------------------- launch/ablation.sh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABLATION = os.path.join(ROOT, "launch", "ablation.sh")
FAKEPY = """#!{python}
import json, os, sys
with open(os.environ["STUB_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
"""
CFG = ["--image-config=experiments/configs/decoupling_tiny.py"]  # any existing file: only its path is passed on


def _ablation(*args, env=None):
    return subprocess.run(["bash", ABLATION, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_ablation_dry_run_prints_each_training_then_the_measurement():
    r = _ablation(
        "--dry-run",
        *CFG,
        "--sets",
        "crop,simclr",
        "--train-flag=--config.train.steps=7",
        "--workdir",
        "runs/abl",
        "--",
        "--cpu-devices",
        "2",
    )
    assert r.returncode == 0, r.stderr
    local = f"bash {ROOT}/launch/local.sh --cpu-devices 2"
    train = "images -- --config=experiments/configs/decoupling_tiny.py"
    assert r.stdout.splitlines() == [
        f"{local} {train} --workdir=runs/abl/crop --config.task=simclr --config.augment.set=crop "
        "--config.train.steps=7",
        f"{local} {train} --workdir=runs/abl/simclr --config.task=simclr --config.augment.set=simclr "
        "--config.train.steps=7",
        f"{local} images -- --config=experiments/configs/photos_supervised_tiny.py --workdir=runs/abl/supervised "
        "--config.task=supervised --config.augment.set=crop_flip --config.train.steps=7",
        f"{local} decoupling -- --config=experiments/configs/decoupling_photos_models.py --workdir=runs/abl/report "
        "--config.models.source=checkpoints "
        "--config.models.checkpoints=runs/abl/crop,runs/abl/simclr,supervised=runs/abl/supervised",
    ]


def test_ablation_slurm_measurement_waits_for_the_trainings():
    r = _ablation(
        "--dry-run",
        *CFG,
        "--launcher=slurm",
        "--sets=crop",
        "--supervised-set=",
        "--workdir=/shared/abl",
        "--",
        "--gpus-per-node",
        "8",
        "--job-name=abl",
    )
    assert r.returncode == 0, r.stderr
    train, measure = r.stdout.splitlines()
    assert "--job-name=abl --script=/shared/abl/slurm/abl-crop.sbatch images --" in train
    assert (
        "--gpus-per-node 8 --job-name=abl --job-name=abl --script=/shared/abl/slurm/abl-report.sbatch "
        "--nodes=1 --gpus-per-node=1 --sbatch-arg=--dependency=singleton decoupling --"
    ) in measure
    assert measure.endswith("--config.models.checkpoints=/shared/abl/crop")


def test_ablation_runs_what_dry_run_prints(tmp_path):
    fake = tmp_path / "fakepython"
    fake.write_text(FAKEPY.format(python=sys.executable))
    fake.chmod(0o755)
    record = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_"))}
    env["STUB_RECORD"] = str(record)
    args = [*CFG, "--sets=none", "--measure-flag=--config.tsne.enabled=False", "--", f"--python={fake}"]
    printed = _ablation("--dry-run", *args, env=env).stdout.splitlines()
    r = _ablation(*args, env=env)
    assert r.returncode == 0, r.stderr
    calls = [json.loads(l) for l in record.read_text().splitlines()]
    import shlex

    words = [shlex.split(p) for p in printed]  # bash local.sh --python=FAKE EXPERIMENT -- FLAGS...
    assert [c["argv"] for c in calls] == [["-m", f"experiments.{w[3]}", *w[5:]] for w in words]
    assert [c["argv"][1] for c in calls] == ["experiments.images"] * 2 + ["experiments.decoupling"]
    assert calls[-1]["argv"][:2] == ["-m", "experiments.decoupling"]
    assert calls[-1]["argv"][-1] == "--config.tsne.enabled=False"
    assert all(c["cwd"] == ROOT for c in calls)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sets=crop,cutout"], "--sets must be a comma list"),
        (["--sets=crop,crop"], "--sets must not repeat"),
        (["--sets=", "--supervised-set="], "--sets is empty"),
        (["--supervised-set=blur"], "--supervised-set must be"),
        (["--launcher=aws"], "--launcher must be"),
        (["--image-config=nope.py"], "--image-config 'nope.py' is not a file"),
        (["--supervised-config=nope.py"], "--supervised-config 'nope.py' is not a file"),
        (["--skip-train", "--skip-measure"], "leave nothing to do"),
        (["--workdir=runs/a b"], "--workdir must be non-empty without spaces"),
        (["--workdir=runs/a,b"], "--workdir must not hold ','"),
        (["crop"], "unknown argument 'crop'"),
    ],
)
def test_ablation_bad_arguments_print_one_line_and_exit_2(args, message):
    r = _ablation(*CFG, *args, "--dry-run")
    assert r.returncode == 2
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1 and message in r.stderr


def test_restore_encoder_reads_an_image_workdir(tmp_path):
    """A workdir laid out as the image experiment writes it (summary.json with the config; a checkpoint of the
    TrainState): the restored encoder has the saved weights, not the initial ones."""
    from flax import nnx

    from cl_features.image_training import network, recipe, trainer
    from cl_features.train import checkpoint, loop

    ic = trainer.validate(encoders.image_config("photos_simclr_tiny"))
    ic.augment.set = "crop_flip_color"
    model = network.make_model(ic, 8)
    tx = recipe.make_optimizer(ic, recipe.make_schedule(ic, 512))
    _, state = loop.init_state(model, tx, 0)
    state = state._replace(params=jax.tree.map(lambda p: p + 0.5, state.params), step=state.step + 7)
    with checkpoint.Checkpointer(str(tmp_path / "checkpoints"), config=ic.to_dict()) as ck:
        ck.save(7, state)
    json.dump(
        {"config": ic.to_dict(), "num_train": 512, "num_classes": 8, "knn_acc": 0.5, "steps": 7},
        open(tmp_path / "summary.json", "w"),
    )
    enc = encoders.restore_encoder(str(tmp_path), "cfc")
    assert (enc.name, enc.train_set, enc.input_size) == ("cfc", "crop_flip_color", 16)
    assert enc.scores == {"train/knn_acc": 0.5, "train_steps": 7}
    # Started again for more steps and stopped at step 9: the config is the checkpoint's, and the scores of the
    # run that finished at step 7 are not the step-9 encoder's.
    with checkpoint.Checkpointer(str(tmp_path / "checkpoints"), config=dict(ic.to_dict(), seed=5)) as ck:
        ck.save(9, state._replace(step=state.step + 2))
    assert encoders.restore_encoder(str(tmp_path), "cfc").scores == {"train_steps": 9}
    assert trainer.restore(str(tmp_path))[0].seed == 5
    got = jax.tree.leaves(nnx.state(enc.module, nnx.Param))
    want = jax.tree.leaves(nnx.state(model.encoder, nnx.Param))
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.asarray(w) + 0.5, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        encoders.restore_encoder(str(tmp_path / "nothing"), "x")
