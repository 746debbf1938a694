#!/usr/bin/env bash
# Runs an experiment on every worker of an existing Cloud TPU VM / pod slice (one process per host;
# cl_features.train.distributed initialises jax.distributed from the TPU metadata).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} --name TPU --zone ZONE [options] EXPERIMENT [-- EXPERIMENT_FLAGS...]
       ${PROG} --name TPU --zone ZONE --setup --repo-url URL [options]

Runs \`cd REPO_DIR && PY -m experiments.EXPERIMENT EXPERIMENT_FLAGS...\` on all workers at once via
\`gcloud compute tpus tpu-vm ssh TPU --worker=all\`. Creates nothing unless --create is given.
The run lives as long as the ssh session: start ${PROG} inside tmux/screen on your machine.

Options:
  --name TPU              TPU VM name (required).
  --zone ZONE             its zone, e.g. us-central2-b (required).
  --project PROJECT       gcloud project (default: gcloud's configured one).
  --worker W              workers to run on (default: all).
  --repo-dir DIR          checkout on the workers, relative to the remote home (default: cl_features).
  --python PY             interpreter on the workers (default: python3).
  --setup                 first, on all workers: clone --repo-url into REPO_DIR if absent, check out
                          --ref, pip install the package and JAX_SPEC.
  --repo-url URL          git URL for --setup.
  --ref REF               branch, tag or commit for --setup (default: HEAD, the remote's default branch).
  --jax-spec SPEC         JAX requirement installed by --setup (default: jax[tpu]).
  --create TYPE           first create the TPU VM with this accelerator type (e.g. v4-32).
  --runtime-version V     TPU software version for --create (default: tpu-ubuntu2204-base).
  --dry-run               print the exact commands and exit without running anything.
  -h, --help              this help.

Example:
  ${PROG} --name my-v4-32 --zone us-central2-b synthetic -- \\
      --config=experiments/configs/synthetic.py --workdir=runs/synthetic
USAGE
}

NAME="" ZONE="" PROJECT="" WORKER=all REPO_DIR=cl_features PYTHON_BIN=python3 SETUP=0 REPO_URL="" REF=HEAD
JAX_SPEC="jax[tpu]" CREATE="" RUNTIME_VERSION=tpu-ubuntu2204-base DRY_RUN=0 EXP="" EXP_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --setup) SETUP=1; shift ;;
    --name | --name=*) take_value "$@"; NAME=$VALUE; shift "$NSHIFT" ;;
    --zone | --zone=*) take_value "$@"; ZONE=$VALUE; shift "$NSHIFT" ;;
    --project | --project=*) take_value "$@"; PROJECT=$VALUE; shift "$NSHIFT" ;;
    --worker | --worker=*) take_value "$@"; WORKER=$VALUE; shift "$NSHIFT" ;;
    --repo-dir | --repo-dir=*) take_value "$@"; REPO_DIR=$VALUE; shift "$NSHIFT" ;;
    --python | --python=*) take_value "$@"; PYTHON_BIN=$VALUE; shift "$NSHIFT" ;;
    --repo-url | --repo-url=*) take_value "$@"; REPO_URL=$VALUE; shift "$NSHIFT" ;;
    --ref | --ref=*) take_value "$@"; REF=$VALUE; shift "$NSHIFT" ;;
    --jax-spec | --jax-spec=*) take_value "$@"; JAX_SPEC=$VALUE; shift "$NSHIFT" ;;
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
check_word --python "$PYTHON_BIN"
[[ -z $PROJECT ]] || check_word --project "$PROJECT"
if ((SETUP)); then
  [[ -n $REPO_URL ]] || die "--setup needs --repo-url (the git URL to clone on the workers)"
  check_word --repo-url "$REPO_URL"
  check_word --ref "$REF"
  check_word --jax-spec "$JAX_SPEC"
elif [[ -n $REPO_URL ]]; then
  die "--repo-url is only used with --setup"
fi
if [[ -n $CREATE ]]; then
  check_word --create "$CREATE"
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
COMMANDS=()  # each entry: one command line, already quoted

if [[ -n $CREATE ]]; then
  COMMANDS+=("$(qjoin gcloud compute tpus tpu-vm create "${GCLOUD_TARGET[@]}" \
    "--accelerator-type=${CREATE}" "--version=${RUNTIME_VERSION}")")
fi
if ((SETUP)); then
  dir=$(q "$REPO_DIR")
  remote="set -e; if [ ! -d ${dir}/.git ]; then git clone $(q "$REPO_URL") ${dir}; fi; cd ${dir}"
  remote+="; git fetch --quiet origin $(q "$REF"); git checkout --quiet --detach FETCH_HEAD"
  remote+="; $(q "$PYTHON_BIN") -m pip install --quiet -e . $(q "$JAX_SPEC")"
  COMMANDS+=("$(qjoin gcloud compute tpus tpu-vm ssh "${GCLOUD_TARGET[@]}" "--worker=${WORKER}" \
    "--command=${remote}")")
fi
if [[ -n $EXP ]]; then
  remote="cd $(q "$REPO_DIR") && $(qjoin "$PYTHON_BIN" -m "experiments.${EXP}" ${EXP_ARGS[@]+"${EXP_ARGS[@]}"})"
  COMMANDS+=("$(qjoin gcloud compute tpus tpu-vm ssh "${GCLOUD_TARGET[@]}" "--worker=${WORKER}" \
    "--command=${remote}")")
fi

for c in "${COMMANDS[@]}"; do
  if ((DRY_RUN)); then
    printf '%s\n' "$c"
  else
    echo "+ $c" >&2
    eval "$c"
  fi
done
