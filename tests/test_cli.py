"""Every experiment main: bad input gives one line and exit status 2, before JAX starts, and leaves the workdir as
it was; --help lists the flags; --print_config prints the resolved config and writes nothing."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAINS = ["synthetic", "images", "decoupling", "sweep"]


def run_main(main, *args, cwd, no_jax=False, tmp_path=None):
    """`python -m experiments.<main> args` from `cwd`; no_jax: importing jax fails (a stand-in package)."""
    path = [str(ROOT)]
    if no_jax:
        fake = tmp_path / "no_jax" / "jax"
        fake.mkdir(parents=True, exist_ok=True)
        (fake / "__init__.py").write_text("raise ImportError('jax was imported')\n")
        path.insert(0, str(fake.parent))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path), JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", f"experiments.{main}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def snapshot(workdir) -> dict:
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(Path(workdir).rglob("*"))
    }


# A mistyped field of each main's default config: (group, typo, field).
TYPO = {m: ("train", "stepz", "steps") for m in MAINS} | {"decoupling": ("data", "num_imagez", "num_images")}
BAD = [
    (["--config.{0}.{1}=10"], "--config.{0}.{1}: config.{0} has no field '{1}'; did you mean --config.{0}.{2}?"),
    (["--config.{0}x.{1}=10"], "--config.{0}x.{1}: the config has no field '{0}x'; did you mean --config.{0}?"),
    (["--config.seed=abc"], "--config.seed=abc"),
    (["--config=missing.py"], "--config: config file 'missing.py' not found"),
    (["--config=missing"], "--config: no config 'missing'; give a config file or the name of a shipped config: "),
    (["--workdir=/proc/x"], "--workdir=/proc/x: cannot create it"),
    (["--workdir=ftp://host/run"], "--workdir=ftp://host/run: ftp:// is not supported; use a local directory"),
    (["stray"], "unexpected arguments ['stray']"),
]


@pytest.mark.parametrize("main", MAINS)
@pytest.mark.parametrize("args,message", BAD, ids=[b[0][0] for b in BAD])
def test_bad_input_is_one_line_exit_2_before_jax_and_nothing_written(tmp_path, main, args, message):
    args, message = [a.format(*TYPO[main]) for a in args], message.format(*TYPO[main])
    work = tmp_path / "work"
    work.mkdir()
    (work / "run_info.json").write_text('{"kind": "x"}\n')
    before = snapshot(work)
    # From a directory that is not the checkout, with a jax that cannot be imported.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workdir = [] if any(a.startswith("--workdir") for a in args) else [f"--workdir={work}"]
    r = run_main(main, *workdir, *args, cwd=elsewhere, no_jax=True, tmp_path=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert message in r.stderr
    assert snapshot(work) == before and not any(elsewhere.iterdir())


def test_help_names_the_flags():
    r = run_main("synthetic", "--help", cwd=ROOT)  # absl's --help exits 1
    for flag in ("--config:", "--workdir:", "--[no]print_config:"):
        assert flag in r.stdout, r.stdout


def test_print_config_from_another_directory_prints_the_resolved_config_and_writes_nothing(tmp_path):
    r = run_main("synthetic", "--print_config", "--config.train.steps=100", f"--workdir={tmp_path}/w", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)
    assert config["train"]["steps"] == 100
    assert config["model"]["width"] == 4 * config["data"]["d"]  # resolved: the derived fields are filled in
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs would try to reach the bucket")
def test_a_bucket_workdir_without_its_filesystem_stops_at_once_and_writes_nothing_locally(tmp_path):
    r = run_main("synthetic", "--workdir=gs://bucket/run", cwd=tmp_path, no_jax=True, tmp_path=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "error: --workdir=gs://bucket/run: cannot reach it (ImportError: Please install gcsfs" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_jax"]  # no ./gs:/bucket/run


def test_a_second_checkout_reads_its_own_configs(tmp_path):
    """A copy of the repository (a worktree, a second clone) finds the configs beside its own cl_features/, not
    those of the checkout the environment's package was installed from."""
    import shutil

    for d in ("cl_features", "experiments"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    probe = "from cl_features import cli; print(cli.configs_package().__path__[0])"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve() == (tmp_path / "experiments" / "configs").resolve()


def test_a_named_config_reads_only_its_own_file_and_an_unknown_name_lists_the_shipped_ones(monkeypatch):
    from cl_features import cli

    configs, opened = os.path.realpath(cli.configs_package().__path__[0]), []

    def counted_open(file, *args, **kwargs):
        opened.append(os.path.relpath(os.path.realpath(file), configs))
        return open(file, *args, **kwargs)

    monkeypatch.setattr(cli, "open", counted_open, raising=False)
    cli.load_config("synthetic")
    assert opened == ["synthetic.py"]
    with pytest.raises(cli.UsageError, match=r"no config 'image_defaults'; .* shipped config: cifar10_.*, synthetic"):
        cli.load_config("image_defaults")  # a module without a get_config
