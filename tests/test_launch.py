"""Tests for launch/*.sh: exact dry-run commands (setup and checks included), argument errors, runs against stub
executables, and the pre-flight checks run as a worker or a job would run them."""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
MIN_PYTHON = PROJECT["requires-python"].removeprefix(">=")
JAX_RANGE = next(d[3:] for d in PROJECT["dependencies"] if re.match(r"jax[<>=]", d))
CONFIG = "--config=experiments/configs/synthetic.py"
# Flags whose quoting matters: a comma list (safe bare), a space, a single quote.
EXP_FLAGS = [CONFIG, "--workdir=runs/a b", "--config.arms=complementary_mask,none", "--config.note=it's"]
EXP_FLAGS_QUOTED = (
    "--config=experiments/configs/synthetic.py '--workdir=runs/a b' "
    "--config.arms=complementary_mask,none '--config.note=it'\"'\"'s'"
)
STUBS = ("gcloud", "sbatch", "srun", "scontrol", "fakepython", "python3", "git")
# Records each call; `python3 -m uv venv ... DIR` also makes DIR/bin/python (a copy of $STUB_VENV_PYTHON).
STUB = """#!{python}
import json, os, shutil, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_RECORD"], "a") as f:
  f.write(json.dumps({{"name": name, "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "env": {{k: os.environ.get(k) for k in
                              ("JAX_PLATFORMS", "XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                               "JAX_PROCESS_ID", "PIP_BREAK_SYSTEM_PACKAGES")}}}}) + "\\n")
if name == "scontrol" and sys.argv[1:3] == ["show", "hostnames"]:
  print("node7\\nnode8")
if name == "python3" and sys.argv[1:4] == ["-m", "uv", "venv"]:
  os.makedirs(os.path.join(sys.argv[-1], "bin"))
  shutil.copy(os.environ["STUB_VENV_PYTHON"], os.path.join(sys.argv[-1], "bin", "python"))
"""
# An environment's bin/python: `-c CODE ...` runs in the real interpreter next to a stand-in jax (and its CUDA
# plugin's metadata); anything else (the experiment) goes to the recording stub.
ENV_PYTHON = """#!/bin/sh
if [ "$1" = -c ]; then PYTHONPATH={fake} exec {python} {flags} "$@"; fi
exec {stub} "$@"
"""
FAKE_JAX = "__version__ = '0.0.fake'\ndefault_backend = lambda: {backend!r}\ndevice_count = lambda: 4\n"


def env_python(path, tmp_path, backend="tpu", version=None, plugin=True):
    """Writes a stand-in environment python at path: jax's backend is `backend` (None: no jax at all), the Python
    version `version` (a tuple; None: the real one), a jax CUDA plugin installed or not."""
    fake = tmp_path / f"fake-{backend}-{'.'.join(map(str, version or ()))}-{plugin}"
    (fake / "jax").mkdir(parents=True, exist_ok=True)
    (fake / "jax" / "__init__.py").write_text(FAKE_JAX.format(backend=backend))
    for dist in ("jax", "jax_cuda12_plugin")[: 1 + plugin]:
        (fake / f"{dist}-0.0.dist-info").mkdir(exist_ok=True)
        (fake / f"{dist}-0.0.dist-info" / "METADATA").write_text(f"Name: {dist.replace('_', '-')}\nVersion: 0.0\n")
    if version:
        (fake / "sitecustomize.py").write_text(f"import sys\nsys.version_info = {version + ('final', 0)!r}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = "-S" if backend is None else ""  # no site-packages: no jax
    quoted = {
        k: shlex.quote(str(v))
        for k, v in dict(fake=fake, python=sys.executable, stub=tmp_path / "bin/fakepython").items()
    }
    path.write_text(ENV_PYTHON.format(flags=flags, **quoted))
    path.chmod(0o755)
    return path


@pytest.fixture
def stubs(tmp_path):
    """A bin dir of stub executables that record each call to a JSON-lines file; returns (env, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STUBS:
        path = bin_dir / name
        path.write_text(STUB.format(python=sys.executable))
        path.chmod(0o755)
    record = tmp_path / "calls.jsonl"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "JAX_PLATFORMS", "PYTHONPATH")
        and not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_"))
    }
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_RECORD=str(record))
    env["STUB_VENV_PYTHON"] = str(env_python(tmp_path / "template" / "python", tmp_path, backend="tpu"))

    def calls():
        return [json.loads(l) for l in record.read_text().splitlines()] if record.exists() else []

    return env, calls


def run(script, *args, env, cwd=None, launch=LAUNCH):
    return subprocess.run(
        ["bash", str(launch / script), *args], env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=60
    )


def sh(command, env, cwd):
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def common(name):
    """A variable of launch/_common.sh."""
    printf = f'source {LAUNCH}/_common.sh && printf %s "${name}"'
    return subprocess.run(["bash", "-c", printf], capture_output=True, text=True, check=True).stdout


PY_CHECK, PLUGIN_CHECK = common("PY_CHECK"), common("PLUGIN_CHECK")


def check(prog, py, fix, *backend):
    return shlex.join([py, "-c", PY_CHECK, prog, MIN_PYTHON, fix, *backend])


def guard(prog, py, fix):
    message = shlex.quote(f"there is no {py}: {fix}")
    return f'{{ [ -x {py} ] || {{ echo "{prog}: on $(hostname), "{message} >&2; exit 1; }}; }}'


def test_requirements_come_from_pyproject():
    """The launchers read the Python and jax requirements from pyproject.toml (as tomllib reads them)."""
    assert [common("MIN_PYTHON"), common("JAX_RANGE")] == [MIN_PYTHON, JAX_RANGE] and JAX_RANGE.startswith(">=")
    assert tuple(map(int, common("SETUP_PYTHON").split("."))) >= tuple(map(int, MIN_PYTHON.split(".")))
    assert "\n" not in PY_CHECK and "m.distributions()" in PLUGIN_CHECK


# --- local.sh ------------------------------------------------------------------------------------------

LOCAL_FIX = f"make a .venv with Python {MIN_PYTHON} or newer: make install PYTHON=python{MIN_PYTHON} (in {{}})"
LOCAL_FIX += ", or pass --python"


def test_local_dry_run_exact(stubs):
    env, calls = stubs
    r = run("local.sh", "--dry-run", "--cpu-devices", "4", "--python=python3", "synthetic", "--", *EXP_FLAGS, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        f"cd {ROOT}\n"
        "env JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=4 python3 -m "
        f"experiments.synthetic {EXP_FLAGS_QUOTED}\n"
    )
    assert shlex.split(r.stdout.splitlines()[1])[6:] == EXP_FLAGS
    assert calls() == []


def test_local_dry_run_defaults_check_the_default_python(stubs):
    env, _ = stubs
    venv = ROOT / ".venv" / "bin" / "python"
    python = str(venv) if os.access(venv, os.X_OK) else "python3"
    r = run("local.sh", "--dry-run", "synthetic", env=env)
    assert r.stdout.splitlines() == [
        f"cd {ROOT}",
        check("local.sh", python, LOCAL_FIX.format(ROOT)),
        f"{shlex.quote(python)} -m experiments.synthetic",
    ]
    assert run("local.sh", "--dry-run", "--no-check", "synthetic", env=env).stdout.splitlines()[1:] == [
        f"{shlex.quote(python)} -m experiments.synthetic"
    ]
    r = run("local.sh", "--dry-run", "--cpu-devices=2", "--python", "py", "images", env=dict(env, XLA_FLAGS="--x=1"))
    assert r.stdout.splitlines()[1:] == [
        "env JAX_PLATFORMS=cpu 'XLA_FLAGS=--x=1 --xla_force_host_platform_device_count=2' py -m experiments.images"
    ]


@pytest.mark.parametrize("version,ok", [((3, 10, 12), False), (None, True)])
def test_local_check_stops_an_old_default_python_with_the_fix(stubs, tmp_path, version, ok):
    env, calls = stubs
    repo = tmp_path / "repo"
    shutil.copytree(LAUNCH, repo / "launch")
    shutil.copy(ROOT / "pyproject.toml", repo)
    env_python(repo / ".venv" / "bin" / "python", tmp_path, backend="cpu", version=version)
    r = run("local.sh", "--processes=2", "synthetic", "--", "--workdir=w", env=env, launch=repo / "launch")
    assert r.stderr.count("\n") == 1, r.stderr
    if ok:
        assert r.returncode == 0 and f"local.sh: on {os.uname().nodename}, {sys.executable}: Python " in r.stderr
        assert [c["argv"] for c in calls()] == [["-m", "experiments.synthetic", "--workdir=w"]] * 2
    else:
        fix = LOCAL_FIX.format(repo)
        assert r.returncode == 1 and r.stderr.endswith(
            f"is Python 3.10, the package needs {MIN_PYTHON} or newer: {fix}\n"
        )
        assert calls() == []


def test_local_runs_what_dry_run_prints(stubs, tmp_path):
    env, calls = stubs
    args = ["--cpu-devices", "3", f"--python={tmp_path / 'bin' / 'fakepython'}", "synthetic", "--", *EXP_FLAGS]
    printed = shlex.split(run("local.sh", "--dry-run", *args, env=env).stdout.splitlines()[1])
    r = run("local.sh", *args, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [call] = calls()
    assert call["argv"] == printed[4:] == ["-m", "experiments.synthetic", *EXP_FLAGS]
    assert call["cwd"] == str(ROOT)
    assert (call["env"]["JAX_PLATFORMS"], call["env"]["XLA_FLAGS"]) == (
        "cpu",
        "--xla_force_host_platform_device_count=3",
    )


def test_local_processes_dry_run_exact_and_run(stubs, tmp_path):
    env, calls = stubs
    py = tmp_path / "bin" / "fakepython"
    args = ["--processes=2", "--port", "23456", f"--python={py}", "synthetic", "--", "--workdir=runs/a b"]
    r = run("local.sh", "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"cd {ROOT}"] + [
        f"env JAX_COORDINATOR_ADDRESS=127.0.0.1:23456 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID={i} "
        f"{py} -m experiments.synthetic '--workdir=runs/a b' &"
        for i in range(2)
    ] + ["wait"]
    assert calls() == []
    r = run("local.sh", *args, env=env)
    assert r.returncode == 0, r.stderr
    got = sorted(calls(), key=lambda c: c["env"]["JAX_PROCESS_ID"])
    assert [c["env"]["JAX_PROCESS_ID"] for c in got] == ["0", "1"]
    for c in got:
        assert c["argv"] == ["-m", "experiments.synthetic", "--workdir=runs/a b"]
        assert (c["env"]["JAX_COORDINATOR_ADDRESS"], c["env"]["JAX_NUM_PROCESSES"]) == ("127.0.0.1:23456", "2")


# --- tpu_vm.sh -----------------------------------------------------------------------------------------

TPU_ARGS = ["--name", "cl-v4", "--zone=us-central2-b", "--project", "my-proj"]
TPU_HINT = "launch/tpu_vm.sh --name=cl-v4 --zone=us-central2-b --project=my-proj --setup --repo-url URL"
TPU_FIX = f"install jax[tpu] with {TPU_HINT}; if it is installed, another process holds the TPU"
TPU_RUN = (
    f"cd cl_features && {guard('tpu_vm.sh', '.venv/bin/python', f'run {TPU_HINT} first')} && "
    + check("tpu_vm.sh", ".venv/bin/python", f"run {TPU_HINT} after deleting cl_features/.venv", "tpu", TPU_FIX)
    + f" && .venv/bin/python -m experiments.synthetic --distributed=on {EXP_FLAGS_QUOTED}"
)


def ssh(remote, target="cl-v4 --zone=us-central2-b --project=my-proj"):
    return f"gcloud compute tpus tpu-vm ssh {target} --worker=all {shlex.quote('--command=' + remote)}"


def test_tpu_vm_dry_run_exact(stubs):
    env, calls = stubs
    r = run("tpu_vm.sh", "--dry-run", *TPU_ARGS, "synthetic", "--", *EXP_FLAGS, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ssh(TPU_RUN) + "\n"
    assert shlex.split(r.stdout)[-1] == "--command=" + TPU_RUN
    assert shlex.split(TPU_RUN)[-9:] == [
        "&&",
        ".venv/bin/python",
        "-m",
        "experiments.synthetic",
        "--distributed=on",
        *EXP_FLAGS,
    ]
    r = run("tpu_vm.sh", "--dry-run", "--no-check", "--venv=/opt/env", *TPU_ARGS, "synthetic", env=env)
    assert r.stdout == ssh("cd cl_features && /opt/env/bin/python -m experiments.synthetic --distributed=on") + "\n"
    assert calls() == []


def test_tpu_vm_create_and_setup_dry_run_exact(stubs):
    env, calls = stubs
    args = ["--name=t", "--zone=z", "--create=v4-32", "--setup", "--repo-url=https://example.com/cl_features.git"]
    args += ["--ref", "v1", "--repo-dir=src/cl", "--venv=env", "--python-version=3.12", "--jax-spec=jax[tpu]==0.10.2"]
    r = run("tpu_vm.sh", "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    hint = "launch/tpu_vm.sh --name=t --zone=z --repo-dir=src/cl --venv=env --setup --repo-url URL"
    setup = "; ".join([
        "set -e",
        "if [ ! -d src/cl/.git ]; then git clone https://example.com/cl_features.git src/cl; fi",
        "cd src/cl",
        "git fetch --quiet origin v1",
        "git checkout --quiet --detach FETCH_HEAD",
        "PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet --upgrade uv",
        "test -x env/bin/python || python3 -m uv venv --python 3.12 env",
        "python3 -m uv pip install --python env/bin/python -e . 'jax[tpu]==0.10.2'",
        check("tpu_vm.sh", "env/bin/python", "delete src/cl/env on the workers and run --setup again", "tpu",
              f"install jax[tpu] with {hint}; if it is installed, another process holds the TPU"),
    ])  # fmt: skip
    assert r.stdout.splitlines() == [
        "gcloud compute tpus tpu-vm create t --zone=z --accelerator-type=v4-32 --version=tpu-ubuntu2204-base",
        ssh(setup, "t --zone=z"),
    ]
    r = run("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", "--setup", "--repo-url=u", "--uv=/bin/uv", env=env)
    remote = shlex.split(r.stdout)[-1]
    assert (
        "pip install --user" not in remote
        and f"/bin/uv pip install --python .venv/bin/python -e . 'jax[tpu]{JAX_RANGE}'" in remote
    )
    assert calls() == []


@pytest.mark.parametrize(
    "accelerator,version",
    [("v4-8", "tpu-ubuntu2204-base"), ("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5p-8", "v2-alpha-tpuv5"),
     ("v6e-8", "v2-alpha-tpuv6e")],
)  # fmt: skip
def test_tpu_vm_create_picks_the_runtime_for_the_accelerator(stubs, accelerator, version):
    r = run("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", f"--create={accelerator}", env=stubs[0])
    assert (
        r.stdout
        == f"gcloud compute tpus tpu-vm create t --zone=z --accelerator-type={accelerator} --version={version}\n"
    )


def test_tpu_vm_runs_what_dry_run_prints(stubs):
    env, calls = stubs
    args = [*TPU_ARGS, "--setup", "--repo-url=git@host:me/cl.git", "synthetic", "--", *EXP_FLAGS]
    printed = run("tpu_vm.sh", "--dry-run", *args, env=env).stdout.splitlines()
    r = run("tpu_vm.sh", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert [["gcloud", *c["argv"]] for c in calls()] == [shlex.split(line) for line in printed]
    assert len(printed) == 2 and "--worker=all" in printed[1]


def test_tpu_vm_setup_runs_on_a_worker(stubs, tmp_path):
    """The printed setup command, run in a worker's home (git, python3 stubbed): every step runs, uv makes the
    environment, and the check passes with it."""
    env, calls = stubs
    (tmp_path / "cl_features" / ".git").mkdir(parents=True)
    r = run("tpu_vm.sh", "--dry-run", "--name=t", "--zone=z", "--setup", "--repo-url=u", env=env)
    r = sh(shlex.split(r.stdout)[-1].removeprefix("--command="), env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.endswith(", jax 0.0.fake on 4 tpu devices\n")
    assert [(c["name"], c["argv"]) for c in calls()] == [
        ("git", ["fetch", "--quiet", "origin", "HEAD"]),
        ("git", ["checkout", "--quiet", "--detach", "FETCH_HEAD"]),
        ("python3", ["-m", "pip", "install", "--user", "--quiet", "--upgrade", "uv"]),
        ("python3", ["-m", "uv", "venv", "--python", "3.11", ".venv"]),
        ("python3", ["-m", "uv", "pip", "install", "--python", ".venv/bin/python", "-e", ".", f"jax[tpu]{JAX_RANGE}"]),
    ]
    assert calls()[2]["env"]["PIP_BREAK_SYSTEM_PACKAGES"] == "1"
    assert {c["cwd"] for c in calls()} == {str(tmp_path / "cl_features")}


@pytest.mark.parametrize(
    "setup,message",
    [
        ({}, None),
        ({"backend": "cpu"}, f"the jax backend is cpu, not tpu: {TPU_FIX}"),
        ({"backend": None}, f"the jax backend is none (no jax), not tpu: {TPU_FIX}"),
        ({"version": (3, 10, 12)}, f"is Python 3.10, the package needs {MIN_PYTHON} or newer: run {TPU_HINT} after"),
        (None, f"there is no .venv/bin/python: run {TPU_HINT} first"),
    ],
)
def test_tpu_vm_run_checks_the_worker_then_runs(stubs, tmp_path, setup, message):
    """The printed run command, run in a worker's home: the experiment runs only when the environment's Python is
    new enough and jax's backend is the TPU; otherwise one line says what is wrong and the fix."""
    env, calls = stubs
    if setup is not None:
        env_python(tmp_path / "cl_features" / ".venv" / "bin" / "python", tmp_path, **setup)
    else:
        (tmp_path / "cl_features").mkdir()
    r = sh(TPU_RUN, env, tmp_path)
    if message is None:
        assert r.returncode == 0, r.stderr
        found = f"{sys.executable}: Python {sys.version.split()[0]}, jax 0.0.fake on 4 tpu devices"
        assert r.stderr == f"tpu_vm.sh: on {os.uname().nodename}, {found}\n"
        assert [c["argv"] for c in calls()] == [["-m", "experiments.synthetic", "--distributed=on", *EXP_FLAGS]]
    else:
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert r.stderr.startswith(f"tpu_vm.sh: on {os.uname().nodename}, ") and calls() == []


# --- slurm.sh ------------------------------------------------------------------------------------------

SLURM_GPU_FIX = "install the CUDA build of jax with {hint}, and give the job GPUs (--gpus-per-node)"


def _sbatch_body(repo_dir, port_expr, extra_sbatch="", prelude="", hint="launch/slurm.sh --setup"):
    py = f"{repo_dir}/.venv/bin/python"
    return (
        "#!/bin/bash\n"
        "#SBATCH --job-name=cl-synthetic\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=4\n"
        "#SBATCH --gpus-per-node=4\n"
        "#SBATCH --cpus-per-task=8\n"
        "#SBATCH --time=04:00:00\n"
        f"#SBATCH --chdir={repo_dir}\n"
        "#SBATCH --output=slurm-%x-%j.out\n"
        f"{extra_sbatch}"
        "# Written by launch/slurm.sh. One task per GPU: JAX's SLURM detection gives each task its\n"
        "# process id (SLURM_PROCID), the process count (SLURM_NTASKS) and its GPU (SLURM_LOCALID).\n"
        "set -eo pipefail\n"
        f"cd {repo_dir}\n"
        f"{prelude}"
        "set -u\n"
        f"{guard('slurm.sh', py, f'run {hint} first')}\n"
        "XLA_PYTHON_CLIENT_PREALLOCATE=false "
        + check("slurm.sh", py, f"run {hint} after deleting {repo_dir}/.venv", "gpu", SLURM_GPU_FIX.format(hint=hint))
        + "\n"
        "COORDINATOR_HOST=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | awk 'NR == 1')\n"
        f'export JAX_COORDINATOR_ADDRESS="${{COORDINATOR_HOST}}:{port_expr}"\n'
        'echo "JAX coordinator: ${JAX_COORDINATOR_ADDRESS}, tasks: ${SLURM_NTASKS}"\n'
        f"srun --kill-on-bad-exit=1 --cpus-per-task=8 {py} -m experiments.synthetic {EXP_FLAGS_QUOTED}\n"
    )


def _slurm_setup(repo_dir, hint="launch/slurm.sh --setup", spec=f"jax[cuda12]{JAX_RANGE}"):
    py = f"{repo_dir}/.venv/bin/python"
    return [
        "PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet --upgrade uv",
        f"test -x {py} || python3 -m uv venv --python 3.11 {repo_dir}/.venv",
        f"python3 -m uv pip install --python {py} -e {repo_dir} {shlex.quote(spec)}",
        check("slurm.sh", py, f"delete {repo_dir}/.venv and run {hint} again"),
        shlex.join([py, "-c", PLUGIN_CHECK, "slurm.sh", spec]),
    ]


def test_slurm_dry_run_exact(stubs):
    env, calls = stubs
    args = ["--nodes", "2", "--gpus-per-node=4", "--partition=gpu", "--sbatch-arg=--qos=high"]
    args += ["--prelude", "module load cuda", "--script=/scratch/j.sbatch", "synthetic", "--", *EXP_FLAGS]
    r = run("slurm.sh", "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    body = _sbatch_body(
        ROOT,
        "$(( SLURM_JOB_ID % 4096 + 61440 ))",
        "#SBATCH --partition=gpu\n#SBATCH --qos=high\n",
        "module load cuda\n",
    )
    assert r.stdout == (
        "mkdir -p /scratch\ncat > /scratch/j.sbatch <<'SBATCH_EOF'\n" + body + "SBATCH_EOF\nsbatch /scratch/j.sbatch\n"
    )
    r = run(
        "slurm.sh",
        "--print",
        "--nodes=2",
        "--gpus-per-node",
        "4",
        "--port=4242",
        "synthetic",
        "--",
        *EXP_FLAGS,
        env=env,
    )
    assert r.stdout == _sbatch_body(ROOT, "4242")
    r = run("slurm.sh", "--print", "--no-check", "--venv=/opt/env", "--gpus-per-node=1", "synthetic", env=env)
    assert "python -c" not in r.stdout and r.stdout.endswith(" /opt/env/bin/python -m experiments.synthetic\n")
    assert calls() == []


def test_slurm_setup_dry_run_exact(stubs):
    env, calls = stubs
    r = run("slurm.sh", "--dry-run", "--setup", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == _slurm_setup(ROOT)
    r = run("slurm.sh", "--dry-run", "--setup", "--cuda=13", "--repo-dir=/shared/cl", "--nodes=2", "--gpus-per-node=4",
            "synthetic", "--", *EXP_FLAGS, env=env)  # fmt: skip
    hint = "launch/slurm.sh --setup --repo-dir=/shared/cl --cuda=13"
    lines = r.stdout.splitlines()
    assert lines[:5] == _slurm_setup("/shared/cl", hint, f"jax[cuda13]{JAX_RANGE}")
    assert "\n".join(lines[7:-2]) + "\n" == _sbatch_body("/shared/cl", "$(( SLURM_JOB_ID % 4096 + 61440 ))", hint=hint)
    assert lines[-1] == "sbatch /shared/cl/runs/slurm/cl-synthetic.sbatch"
    assert calls() == []


@pytest.mark.parametrize("plugin", [True, False])
def test_slurm_setup_runs_what_dry_run_prints_then_submits(stubs, tmp_path, plugin):
    env, calls = stubs
    env["STUB_VENV_PYTHON"] = str(env_python(tmp_path / "t2" / "python", tmp_path, backend="cpu", plugin=plugin))
    args = ["--setup", f"--repo-dir={tmp_path}", "--gpus-per-node=1", f"--script={tmp_path}/j.sbatch", "synthetic"]
    printed = run("slurm.sh", "--dry-run", *args, env=env).stdout.splitlines()
    r = run("slurm.sh", *args, env=env)
    got = [(c["name"], c["argv"]) for c in calls()]
    assert got[:3] == [("python3", shlex.split(line)[2:]) for line in printed[:1]] + [
        ("python3", shlex.split(printed[1])[5:]),
        ("python3", shlex.split(printed[2])[1:]),
    ]
    assert calls()[0]["env"]["PIP_BREAK_SYSTEM_PACKAGES"] == "1"
    if plugin:
        assert r.returncode == 0, r.stderr
        assert got[3:] == [("sbatch", [f"{tmp_path}/j.sbatch"])]
        assert r.stderr.splitlines()[-2].endswith("has jax 0.0, jax-cuda12-plugin 0.0"), r.stderr
    else:
        assert r.returncode == 1 and got[3:] == []
        assert r.stderr.splitlines()[-1].endswith(f"has no CUDA plugin of jax: install jax[cuda12]{JAX_RANGE} into it")


@pytest.mark.parametrize("backend", ["gpu", "cpu"])
def test_slurm_submits_and_the_job_script_checks_then_runs(stubs, tmp_path, backend):
    env, calls = stubs
    script = tmp_path / "jobs" / "j.sbatch"
    args = [
        "--nodes=2",
        "--gpus-per-node=4",
        f"--repo-dir={tmp_path}",
        f"--script={script}",
        "synthetic",
        "--",
        *EXP_FLAGS,
    ]
    r = run("slurm.sh", *args, env=env)
    assert r.returncode == 0, r.stderr
    hint = shlex.quote(f"--repo-dir={tmp_path}")
    assert script.read_text() == _sbatch_body(
        tmp_path, "$(( SLURM_JOB_ID % 4096 + 61440 ))", hint=f"launch/slurm.sh --setup {hint}"
    )
    assert [(c["name"], c["argv"]) for c in calls()] == [("sbatch", [str(script)])]

    # Run the job script itself as SLURM would, with scontrol/srun stubbed and a stand-in environment.
    env_python(tmp_path / ".venv" / "bin" / "python", tmp_path, backend=backend)
    job_env = dict(env, SLURM_JOB_ID="5000", SLURM_JOB_NODELIST="node[7-8]", SLURM_NTASKS="8")
    r = subprocess.run(["bash", str(script)], env=job_env, capture_output=True, text=True, timeout=60)
    if backend == "cpu":
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and len(calls()) == 1
        assert r.stderr.endswith(
            f"the jax backend is cpu, not gpu: {SLURM_GPU_FIX.format(hint=f'launch/slurm.sh --setup {hint}')}\n"
        )
        return
    assert r.returncode == 0, r.stderr
    expected_address = f"node7:{5000 % 4096 + 61440}"
    assert r.stdout == f"JAX coordinator: {expected_address}, tasks: 8\n"
    assert r.stderr.endswith(", jax 0.0.fake on 4 gpu devices\n")
    scontrol, srun = calls()[1:]
    assert scontrol["argv"] == ["show", "hostnames", "node[7-8]"]
    assert srun["argv"] == [
        "--kill-on-bad-exit=1", "--cpus-per-task=8", f"{tmp_path}/.venv/bin/python", "-m", "experiments.synthetic",
        *EXP_FLAGS,
    ]  # fmt: skip
    assert srun["env"]["JAX_COORDINATOR_ADDRESS"] == expected_address
    assert srun["cwd"] == str(tmp_path)


def test_slurm_job_without_an_environment_stops_with_the_fix(stubs, tmp_path):
    env, calls = stubs
    r = run("slurm.sh", "--print", "--gpus-per-node=1", f"--repo-dir={tmp_path}", "--venv=env", "synthetic", env=env)
    (tmp_path / "j.sbatch").write_text(r.stdout)
    job_env = dict(env, SLURM_JOB_ID="1", SLURM_JOB_NODELIST="n1", SLURM_NTASKS="1")
    r = subprocess.run(["bash", str(tmp_path / "j.sbatch")], env=job_env, capture_output=True, text=True, timeout=60)
    fix = f"run launch/slurm.sh --setup --repo-dir={tmp_path} --venv=env first"
    assert (
        r.returncode == 1
        and r.stderr == f"slurm.sh: on {os.uname().nodename}, there is no {tmp_path}/env/bin/python: {fix}\n"
    )
    assert calls() == []


# --- errors and help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script,args,message",
    [
        ("local.sh", [], "missing EXPERIMENT"),
        ("local.sh", ["--cpu-devices=0", "synthetic"], "--cpu-devices must be an integer >= 1"),
        ("local.sh", ["synthetic", "--cpu-devices"], "--cpu-devices needs a value"),
        ("local.sh", ["--bogus", "synthetic"], "unknown option '--bogus'"),
        ("local.sh", ["synthetic", "--workdir=x"], "unknown option '--workdir=x'"),
        ("local.sh", ["synthetic", "extra"], "unexpected argument 'extra'"),
        ("local.sh", ["--processes=0", "synthetic"], "--processes must be an integer >= 1"),
        ("local.sh", ["experiments/synthetic.py"], "EXPERIMENT must be a module name"),
        ("tpu_vm.sh", ["--zone=z", "synthetic"], "missing --name"),
        ("tpu_vm.sh", ["--name=t", "synthetic"], "missing --zone"),
        ("tpu_vm.sh", ["--name=t", "--zone=z"], "missing EXPERIMENT"),
        ("tpu_vm.sh", ["--name=t", "--zone=z", "--setup"], "--setup needs --repo-url"),
        ("tpu_vm.sh", ["--name", "--zone=z", "synthetic"], "--name needs a value"),
        ("tpu_vm.sh", ["--name=t", "--zone=z", "--setup", "--repo-url=u", "--python-version=3.10"],
         f"--python-version must be a Python version {MIN_PYTHON} or newer"),
        ("tpu_vm.sh", ["--name=t", "--zone=z", "--create=v9-8"], "--runtime-version is needed for --create 'v9-8'"),
        ("tpu_vm.sh", ["--name=t", "--zone=z", "--venv=a b", "synthetic"], "--venv must be non-empty"),
        ("slurm.sh", ["--gpus-per-node=8"], "missing EXPERIMENT"),
        ("slurm.sh", ["synthetic"], "missing --gpus-per-node"),
        ("slurm.sh", ["--gpus-per-node=two", "synthetic"], "--gpus-per-node must be an integer >= 1"),
        ("slurm.sh", ["--gpus-per-node=8", "--port=70000", "synthetic"], "--port must be an integer >= 1 and <= 65535"),
        ("slurm.sh", ["--gpus-per-node=8", "--partition=a b", "synthetic"], "--partition must be non-empty"),
        ("slurm.sh", ["--gpus-per-node=8", "--sbatch-arg=qos", "synthetic"], "--sbatch-arg must be an sbatch option"),
        ("slurm.sh", ["--setup", "--cuda=11"], "--cuda must be 12 or 13, got '11'"),
        ("slurm.sh", ["--setup", "--python-version=3"], "--python-version must be a Python version"),
        ("slurm.sh", ["--setup", "--", "--x"], "experiment flags given but no EXPERIMENT"),
        ("slurm.sh", ["--setup", "--print"], "--print only prints the job script"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line(stubs, script, args, message):
    env, calls = stubs
    for extra in ([], ["--dry-run"]):
        r = run(script, *extra, *args, env=env)
        assert r.returncode == 2
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert r.stderr.startswith(f"{script}: error: ")
    assert calls() == []


def test_an_unreadable_pyproject_stops_every_launcher(stubs, tmp_path):
    shutil.copytree(LAUNCH, tmp_path / "launch")
    for script in ("local.sh", "tpu_vm.sh", "slurm.sh"):
        r = run(script, "--dry-run", "synthetic", env=stubs[0], launch=tmp_path / "launch")
        assert (r.returncode, r.stdout) == (2, "")
        what = f"cannot read requires-python and the jax requirement from {tmp_path}/pyproject.toml"
        assert r.stderr == f"{script}: error: {what} (see {script} --help)\n"


@pytest.mark.parametrize("script", ["local.sh", "tpu_vm.sh", "slurm.sh"])
def test_help(stubs, script):
    env, calls = stubs
    r = run(script, "--help", env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {script} ") and "--dry-run" in r.stdout
    assert r.stderr == "" and calls() == []
