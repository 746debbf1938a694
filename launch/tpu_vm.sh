#!/usr/bin/env bash
# Runs an experiment on every worker of an existing Cloud TPU VM / pod slice (one process per host;
# the experiment gets --distributed=on, so jax.distributed.initialize() finds the other workers itself).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} --name TPU --zone ZONE [options] EXPERIMENT [-- EXPERIMENT_FLAGS...]
       ${PROG} --name TPU --zone ZONE --setup --repo-url URL [options] [EXPERIMENT [-- EXPERIMENT_FLAGS...]]

Runs \`cd REPO_DIR && VENV/bin/python -m experiments.EXPERIMENT --distributed=on EXPERIMENT_FLAGS...\` on all workers at once
via \`gcloud compute tpus tpu-vm ssh TPU --worker=all\`, after a one-line Python check on each worker that
stops with the fix unless VENV's Python is ${MIN_PYTHON} or newer and jax's backend is the TPU.
Creates nothing unless --create is given. The run lives as long as the ssh session: start ${PROG} inside
tmux/screen on your machine.

Options:
  --name TPU              TPU VM name (required).
  --zone ZONE             its zone, e.g. us-central2-b (required).
  --project PROJECT       gcloud project (default: gcloud's configured one).
  --worker W              workers to run on (default: all).
  --repo-dir DIR          checkout on the workers, relative to the remote home (default: cl_features).
  --venv DIR              virtual environment on the workers whose bin/python runs the experiment, relative
                          to REPO_DIR (default: .venv).
  --setup                 first, on all workers: clone --repo-url into REPO_DIR if absent, check out --ref,
                          install uv (pip install --user uv, unless --uv), make VENV with Python
                          PYTHON_VERSION if it does not exist, install the package and JAX_SPEC into it, and
                          run the check.
  --repo-url URL          git URL for --setup.
  --ref REF               branch, tag or commit for --setup (default: HEAD, the remote's default branch).
  --python-version V      Python of a new VENV, ${MIN_PYTHON} or newer (default: ${SETUP_PYTHON}); uv downloads it
                          when the worker has no such Python.
  --jax-spec SPEC         JAX requirement installed by --setup (default: jax[tpu]${JAX_RANGE}, the package's range).
  --uv UV                 uv executable on the workers (default: python3 -m uv, installed by --setup).
  --create TYPE           first create the TPU VM with this accelerator type (e.g. v4-32, v5litepod-16, v6e-8).
  --runtime-version V     TPU software version for --create (default by TYPE: tpu-ubuntu2204-base for v2, v3
                          and v4; v2-alpha-tpuv5-lite for v5litepod; v2-alpha-tpuv5 for v5p; v2-alpha-tpuv6e
                          for v6e).
  --no-check              run the experiment without the check.
  --dry-run               print the exact commands and exit without running anything.
  -h, --help              this help.

Example:
  ${PROG} --name my-v4-32 --zone us-central2-b --create v4-32 --setup --repo-url https://github.com/ME/cl_features.git
  ${PROG} --name my-v4-32 --zone us-central2-b synthetic -- \\
      --config=experiments/configs/synthetic.py --workdir=runs/synthetic
USAGE
}

NAME="" ZONE="" PROJECT="" WORKER=all REPO_DIR=cl_features VENV=.venv SETUP=0 REPO_URL="" REF=HEAD
PYTHON_VERSION=$SETUP_PYTHON JAX_SPEC="jax[tpu]${JAX_RANGE}" UV="" CREATE="" RUNTIME_VERSION="" CHECK=1 DRY_RUN=0
EXP="" EXP_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --setup) SETUP=1; shift ;;
    --no-check) CHECK=0; shift ;;
    --name | --name=*) take_value "$@"; NAME=$VALUE; shift "$NSHIFT" ;;
    --zone | --zone=*) take_value "$@"; ZONE=$VALUE; shift "$NSHIFT" ;;
    --project | --project=*) take_value "$@"; PROJECT=$VALUE; shift "$NSHIFT" ;;
    --worker | --worker=*) take_value "$@"; WORKER=$VALUE; shift "$NSHIFT" ;;
    --repo-dir | --repo-dir=*) take_value "$@"; REPO_DIR=$VALUE; shift "$NSHIFT" ;;
    --venv | --venv=*) take_value "$@"; VENV=$VALUE; shift "$NSHIFT" ;;
    --repo-url | --repo-url=*) take_value "$@"; REPO_URL=$VALUE; shift "$NSHIFT" ;;
    --ref | --ref=*) take_value "$@"; REF=$VALUE; shift "$NSHIFT" ;;
    --python-version | --python-version=*) take_value "$@"; PYTHON_VERSION=$VALUE; shift "$NSHIFT" ;;
    --jax-spec | --jax-spec=*) take_value "$@"; JAX_SPEC=$VALUE; shift "$NSHIFT" ;;
    --uv | --uv=*) take_value "$@"; UV=$VALUE; shift "$NSHIFT" ;;
    --create | --create=*) take_value "$@"; CREATE=$VALUE; shift "$NSHIFT" ;;
    --runtime-version | --runtime-version=*) take_value "$@"; RUNTIME_VERSION=$VALUE; shift "$NSHIFT" ;;
    --) shift; EXP_ARGS=("$@"); break ;;
    -*) die "unknown option '$1'" ;;
    *) [[ -z $EXP ]] || die "unexpected argument '$1' (experiment flags go after --)"; EXP=$1; shift ;;
  esac
done

[[ -n $NAME ]] || die "missing --name (the TPU VM's name)"
[[ -n $ZONE ]] || die "missing --zone (e.g. us-central2-b)"
check_word --name "$NAME"
check_word --zone "$ZONE"
check_word --worker "$WORKER"
check_word --repo-dir "$REPO_DIR"
check_word --venv "$VENV"
[[ -z $PROJECT ]] || check_word --project "$PROJECT"
if ((SETUP)); then
  [[ -n $REPO_URL ]] || die "--setup needs --repo-url (the git URL to clone on the workers)"
  check_word --repo-url "$REPO_URL"
  check_word --ref "$REF"
  check_python_version --python-version "$PYTHON_VERSION"
  check_word --jax-spec "$JAX_SPEC"
  [[ -z $UV ]] || check_word --uv "$UV"
elif [[ -n $REPO_URL ]]; then
  die "--repo-url is only used with --setup"
fi
if [[ -n $CREATE ]]; then
  check_word --create "$CREATE"
  if [[ -z $RUNTIME_VERSION ]]; then
    case $CREATE in
      v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
      v5litepod-* | v5e-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
      v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
      v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
      *) die "--runtime-version is needed for --create '${CREATE}' (a default is known for v2-, v3-, v4-, v5litepod-, v5p-, v6e- types)" ;;
    esac
  fi
  check_word --runtime-version "$RUNTIME_VERSION"
fi
if [[ -n $EXP ]]; then
  check_experiment "$EXP"
elif ((!SETUP)) && [[ -z $CREATE ]]; then
  die "missing EXPERIMENT (e.g. synthetic)"
elif ((${#EXP_ARGS[@]})); then
  die "experiment flags given but no EXPERIMENT"
fi

GCLOUD_TARGET=("$NAME" "--zone=${ZONE}")
[[ -z $PROJECT ]] || GCLOUD_TARGET+=("--project=${PROJECT}")
PY=${VENV}/bin/python
# The command that sets the workers up, for the fix lines of the checks.
HINT=(launch/tpu_vm.sh "--name=${NAME}" "--zone=${ZONE}")
[[ -z $PROJECT ]] || HINT+=("--project=${PROJECT}")
[[ $REPO_DIR == cl_features ]] || HINT+=("--repo-dir=${REPO_DIR}")
[[ $VENV == .venv ]] || HINT+=("--venv=${VENV}")
HINT="$(qjoin "${HINT[@]}") --setup --repo-url URL"
TPU_FIX="install jax[tpu] with ${HINT}; if it is installed, another process holds the TPU"
if [[ -n $UV ]]; then UV_CMD=$(q "$UV"); else UV_CMD="python3 -m uv"; fi

# ssh_command REMOTE: the gcloud command that runs REMOTE on the workers.
ssh_command() {
  qjoin gcloud compute tpus tpu-vm ssh "${GCLOUD_TARGET[@]}" "--worker=${WORKER}" "--command=$1"
}

COMMANDS=()  # each entry: one command line, already quoted
if [[ -n $CREATE ]]; then
  COMMANDS+=("$(qjoin gcloud compute tpus tpu-vm create "${GCLOUD_TARGET[@]}" \
    "--accelerator-type=${CREATE}" "--version=${RUNTIME_VERSION}")")
fi
if ((SETUP)); then
  dir=$(q "$REPO_DIR") venv=$(q "$VENV") py=$(q "$PY")
  remote="set -e; if [ ! -d ${dir}/.git ]; then git clone $(q "$REPO_URL") ${dir}; fi; cd ${dir}"
  remote+="; git fetch --quiet origin $(q "$REF"); git checkout --quiet --detach FETCH_HEAD"
  # uv from PyPI into the user's site (PIP_BREAK_SYSTEM_PACKAGES lets pip do that where the system Python is
  # marked externally managed); uv makes the environment with a Python the package supports.
  [[ -n $UV ]] || remote+="; PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet --upgrade uv"
  remote+="; test -x ${py} || ${UV_CMD} venv --python $(q "$PYTHON_VERSION") ${venv}"
  remote+="; ${UV_CMD} pip install --python ${py} -e . $(q "$JAX_SPEC")"
  remote+="; $(check_command "$PY" "delete ${REPO_DIR}/${VENV} on the workers and run --setup again" tpu "$TPU_FIX")"
  COMMANDS+=("$(ssh_command "$remote")")
fi
if [[ -n $EXP ]]; then
  remote="cd $(q "$REPO_DIR")"
  if ((CHECK)); then
    remote+=" && $(missing_python_guard "$PY" "run ${HINT} first")"
    remote+=" && $(check_command "$PY" "run ${HINT} after deleting ${REPO_DIR}/${VENV}" tpu "$TPU_FIX")"
  fi
  remote+=" && $(qjoin "$PY" -m "experiments.${EXP}" --distributed=on ${EXP_ARGS[@]+"${EXP_ARGS[@]}"})"
  COMMANDS+=("$(ssh_command "$remote")")
fi

for c in "${COMMANDS[@]}"; do
  if ((DRY_RUN)); then
    printf '%s\n' "$c"
  else
    echo "+ $c" >&2
    eval "$c"
  fi
done
