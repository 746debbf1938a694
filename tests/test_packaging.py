"""The built wheel, installed into a fresh virtual environment and run from an empty directory that is not the
checkout: the mains and configs ship as cl_features.experiments (no top-level `experiments` package), a config is
found by its name, the resolved config prints without running, and the synthetic experiment runs."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = [  # the default config made tiny: one arm, 100 steps of 64 examples in 32 dimensions
    "--config.arms=complementary_mask",
    "--config.data.d=8",
    "--config.data.d1=32",
    "--config.train.batch_size=64",
    "--config.train.steps=100",
    "--config.train.log_every=50",
    "--config.checkpoint.every=0",
    "--config.measure.num_samples=512",
]


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, the wheel's file names, an empty directory)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    ignore = shutil.ignore_patterns("__pycache__", "notebooks")
    for name in ("cl_features", "experiments"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(src)])
    (wheel,) = tmp.glob("cl_features-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)])
    # The dependencies come from this interpreter's site-packages, added as a plain path: its .pth files (an
    # editable install of the checkout among them) are not run.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    empty = tmp / "empty"
    empty.mkdir()
    return python, zipfile.ZipFile(wheel).namelist(), empty


def _main(installed, main, *args):
    python, _, empty = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["JAX_PLATFORMS"] = "cpu"
    return _run([str(python), "-m", f"cl_features.experiments.{main}", *args], cwd=empty, env=env)


def test_the_wheel_ships_every_package_under_cl_features_only(installed):
    _, names, _ = installed
    assert {n.split("/")[0] for n in names} == {"cl_features", "cl_features-0.1.0.dist-info"}
    inits = {str(p.relative_to(ROOT)) for d in ("cl_features", "experiments") for p in (ROOT / d).rglob("__init__.py")}
    shipped = {n.replace("cl_features/experiments/", "experiments/", 1) for n in names}
    assert inits <= shipped, inits - shipped
    assert "cl_features/experiments/configs/synthetic.py" in names


def test_a_named_config_is_found_and_printed_without_running(installed):
    _, _, empty = installed
    r = _main(installed, "images", "--config=photos_simclr_tiny", "--print_config")
    config = json.loads(r.stdout)
    assert config["data"]["source"] == "photos" and config["model"]["encoder"] == "resnet_tiny"
    assert list(empty.iterdir()) == []  # nothing written


def test_the_synthetic_experiment_runs_on_a_tiny_override_of_its_default_config(installed):
    _, _, empty = installed
    r = _main(installed, "synthetic", "--workdir=run", *TINY)
    assert "wrote run/summary.json" in r.stdout
    summary = json.loads((empty / "run" / "summary.json").read_text())
    assert summary["config"]["train"]["steps"] == 100 and list(summary["arms"]) == ["complementary_mask"]
    info = json.loads((empty / "run" / "run_info.json").read_text())
    assert info["git_commit"] == "unknown" and info["package_version"] == "0.1.0"
    shutil.rmtree(empty / "run")
