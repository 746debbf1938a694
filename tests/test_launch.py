"""Tests for launch/*.sh: exact dry-run commands, argument errors, and runs against stub executables."""

import json
import os
import pathlib
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
CONFIG = "--config=experiments/configs/synthetic.py"
# Flags whose quoting matters: a comma list (safe bare), a space, a single quote.
EXP_FLAGS = [CONFIG, "--workdir=runs/a b", "--config.arms=complementary_mask,none", "--config.note=it's"]
EXP_FLAGS_QUOTED = (
    "--config=experiments/configs/synthetic.py '--workdir=runs/a b' "
    "--config.arms=complementary_mask,none '--config.note=it'\"'\"'s'"
)
STUBS = ("gcloud", "sbatch", "srun", "scontrol", "fakepython")
STUB = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_RECORD"], "a") as f:
  f.write(json.dumps({{"name": name, "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "env": {{k: os.environ.get(k) for k in
                              ("JAX_PLATFORMS", "XLA_FLAGS", "JAX_COORDINATOR_ADDRESS",
                               "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")}}}}) + "\\n")
if name == "scontrol" and sys.argv[1:3] == ["show", "hostnames"]:
  print("node7\\nnode8")
"""


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
        if k not in ("XLA_FLAGS", "JAX_PLATFORMS")
        and not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_"))
    }
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_RECORD=str(record))

    def calls():
        return [json.loads(l) for l in record.read_text().splitlines()] if record.exists() else []

    return env, calls


def run(script, *args, env, cwd=None):
    return subprocess.run(
        ["bash", str(LAUNCH / script), *args], env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=30
    )


# --- local.sh ------------------------------------------------------------------------------------------


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


def test_local_dry_run_defaults_and_existing_xla_flags(stubs):
    env, _ = stubs
    venv = ROOT / ".venv" / "bin" / "python"
    python = str(venv) if os.access(venv, os.X_OK) else "python3"
    r = run("local.sh", "--dry-run", "synthetic", env=env)
    assert r.stdout.splitlines()[1] == f"{shlex.quote(python)} -m experiments.synthetic"
    r = run(
        "local.sh",
        "--dry-run",
        "--cpu-devices=2",
        "--python",
        "py",
        "images",
        env=dict(env, XLA_FLAGS="--xla_dump_to=/tmp/d"),
    )
    assert r.stdout.splitlines()[1] == (
        "env JAX_PLATFORMS=cpu 'XLA_FLAGS=--xla_dump_to=/tmp/d --xla_force_host_platform_device_count=2' "
        "py -m experiments.images"
    )


def test_local_runs_what_dry_run_prints(stubs, tmp_path):
    env, calls = stubs
    args = ["--cpu-devices", "3", f"--python={tmp_path / 'bin' / 'fakepython'}", "synthetic", "--", *EXP_FLAGS]
    printed = shlex.split(run("local.sh", "--dry-run", *args, env=env).stdout.splitlines()[1])
    r = run("local.sh", *args, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [call] = calls()
    assert call["argv"] == printed[4:] == ["-m", "experiments.synthetic", *EXP_FLAGS]
    assert call["cwd"] == str(ROOT)
    assert call["env"]["JAX_PLATFORMS"] == "cpu"
    assert call["env"]["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"


def test_local_processes_dry_run_exact_and_run(stubs, tmp_path):
    env, calls = stubs
    args = [
        "--processes=2",
        "--port",
        "23456",
        f"--python={tmp_path / 'bin' / 'fakepython'}",
        "synthetic",
        "--",
        "--workdir=runs/a b",
    ]
    r = run("local.sh", "--dry-run", *args, env=env)
    assert r.returncode == 0, r.stderr
    py = tmp_path / "bin" / "fakepython"
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


def test_tpu_vm_dry_run_exact(stubs):
    env, calls = stubs
    r = run("tpu_vm.sh", "--dry-run", *TPU_ARGS, "synthetic", "--", *EXP_FLAGS, env=env)
    assert r.returncode == 0, r.stderr
    remote = f"cd cl_features && python3 -m experiments.synthetic {EXP_FLAGS_QUOTED}"
    assert r.stdout == (
        "gcloud compute tpus tpu-vm ssh cl-v4 --zone=us-central2-b --project=my-proj "
        f"--worker=all {shlex.quote('--command=' + remote)}\n"
    )
    argv = shlex.split(r.stdout)
    assert argv[-1] == "--command=" + remote
    assert shlex.split(remote) == ["cd", "cl_features", "&&", "python3", "-m", "experiments.synthetic", *EXP_FLAGS]
    assert calls() == []


def test_tpu_vm_create_and_setup_dry_run_exact(stubs):
    env, calls = stubs
    r = run(
        "tpu_vm.sh",
        "--dry-run",
        "--name=t",
        "--zone=z",
        "--create=v4-32",
        "--setup",
        "--repo-url=https://example.com/cl_features.git",
        "--ref",
        "v1",
        "--repo-dir=src/cl",
        "--python=/opt/venv/bin/python",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    setup = (
        "set -e; if [ ! -d src/cl/.git ]; then git clone https://example.com/cl_features.git src/cl; fi; "
        "cd src/cl; git fetch --quiet origin v1; git checkout --quiet --detach FETCH_HEAD; "
        "/opt/venv/bin/python -m pip install --quiet -e . 'jax[tpu]'"
    )
    assert r.stdout.splitlines() == [
        "gcloud compute tpus tpu-vm create t --zone=z --accelerator-type=v4-32 --version=tpu-ubuntu2204-base",
        f"gcloud compute tpus tpu-vm ssh t --zone=z --worker=all {shlex.quote('--command=' + setup)}",
    ]
    assert calls() == []


def test_tpu_vm_runs_what_dry_run_prints(stubs):
    env, calls = stubs
    args = [*TPU_ARGS, "--setup", "--repo-url=git@host:me/cl.git", "synthetic", "--", *EXP_FLAGS]
    printed = run("tpu_vm.sh", "--dry-run", *args, env=env).stdout.splitlines()
    r = run("tpu_vm.sh", *args, env=env)
    assert r.returncode == 0, r.stderr
    assert [["gcloud", *c["argv"]] for c in calls()] == [shlex.split(line) for line in printed]
    assert len(printed) == 2 and "--worker=all" in printed[1]


# --- slurm.sh ------------------------------------------------------------------------------------------


def _sbatch_body(repo_dir, port_expr, extra_sbatch="", prelude=""):
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
        "COORDINATOR_HOST=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | awk 'NR == 1')\n"
        f'export JAX_COORDINATOR_ADDRESS="${{COORDINATOR_HOST}}:{port_expr}"\n'
        'echo "JAX coordinator: ${JAX_COORDINATOR_ADDRESS}, tasks: ${SLURM_NTASKS}"\n'
        f"srun --kill-on-bad-exit=1 --cpus-per-task=8 python3 -m experiments.synthetic {EXP_FLAGS_QUOTED}\n"
    )


def test_slurm_dry_run_exact(stubs):
    env, calls = stubs
    r = run(
        "slurm.sh",
        "--dry-run",
        "--nodes",
        "2",
        "--gpus-per-node=4",
        "--partition=gpu",
        "--sbatch-arg=--qos=high",
        "--prelude",
        "source .venv/bin/activate",
        "--script=/scratch/j.sbatch",
        "synthetic",
        "--",
        *EXP_FLAGS,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    body = _sbatch_body(
        ROOT,
        "$(( SLURM_JOB_ID % 4096 + 61440 ))",
        "#SBATCH --partition=gpu\n#SBATCH --qos=high\n",
        "source .venv/bin/activate\n",
    )
    assert r.stdout == (
        "mkdir -p /scratch\ncat > /scratch/j.sbatch <<'SBATCH_EOF'\n" + body + "SBATCH_EOF\nsbatch /scratch/j.sbatch\n"
    )
    assert calls() == []
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
    assert calls() == []


def test_slurm_submits_and_the_job_script_sets_the_coordinator(stubs, tmp_path):
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
    assert script.read_text() == _sbatch_body(tmp_path, "$(( SLURM_JOB_ID % 4096 + 61440 ))")
    assert [(c["name"], c["argv"]) for c in calls()] == [("sbatch", [str(script)])]

    # Run the job script itself as SLURM would, with scontrol/srun stubbed.
    job_env = dict(env, SLURM_JOB_ID="5000", SLURM_JOB_NODELIST="node[7-8]", SLURM_NTASKS="8")
    r = subprocess.run(["bash", str(script)], env=job_env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    expected_address = f"node7:{5000 % 4096 + 61440}"
    assert r.stdout == f"JAX coordinator: {expected_address}, tasks: 8\n"
    scontrol, srun = calls()[1:]
    assert scontrol["argv"] == ["show", "hostnames", "node[7-8]"]
    assert srun["argv"] == [
        "--kill-on-bad-exit=1",
        "--cpus-per-task=8",
        "python3",
        "-m",
        "experiments.synthetic",
        *EXP_FLAGS,
    ]
    assert srun["env"]["JAX_COORDINATOR_ADDRESS"] == expected_address
    assert srun["cwd"] == str(tmp_path)


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
        ("slurm.sh", ["--gpus-per-node=8"], "missing EXPERIMENT"),
        ("slurm.sh", ["synthetic"], "missing --gpus-per-node"),
        ("slurm.sh", ["--gpus-per-node=two", "synthetic"], "--gpus-per-node must be an integer >= 1"),
        ("slurm.sh", ["--gpus-per-node=8", "--port=70000", "synthetic"], "--port must be an integer >= 1 and <= 65535"),
        ("slurm.sh", ["--gpus-per-node=8", "--partition=a b", "synthetic"], "--partition must be non-empty"),
        ("slurm.sh", ["--gpus-per-node=8", "--sbatch-arg=qos", "synthetic"], "--sbatch-arg must be an sbatch option"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(stubs, script, args, message):
    env, calls = stubs
    for extra in ([], ["--dry-run"]):
        r = run(script, *extra, *args, env=env)
        assert r.returncode == 2
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert r.stderr.startswith(f"{script}: error: ")
    assert calls() == []


@pytest.mark.parametrize("script", ["local.sh", "tpu_vm.sh", "slurm.sh"])
def test_help(stubs, script):
    env, calls = stubs
    r = run(script, "--help", env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: {script} ") and "--dry-run" in r.stdout
    assert r.stderr == "" and calls() == []
