#!/usr/bin/env bash
# Runs an experiment on this machine (one process), optionally on N forced CPU devices.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} [options] EXPERIMENT [-- EXPERIMENT_FLAGS...]

Runs \`python -m experiments.EXPERIMENT EXPERIMENT_FLAGS...\` from the repository root
(${REPO_ROOT}); relative paths in the flags are relative to it.

Options:
  --cpu-devices N   run on CPU with N forced host devices (JAX_PLATFORMS=cpu,
                    XLA_FLAGS+=--xla_force_host_platform_device_count=N): a stand-in
                    for a multi-device mesh on a laptop.
  --python PY       interpreter (default: .venv/bin/python if present, else python3).
  --dry-run         print the exact commands and exit without running anything.
  -h, --help        this help.

Example:
  ${PROG} --cpu-devices 4 synthetic -- --config=experiments/configs/synthetic.py --workdir=runs/synthetic
USAGE
}

EXP="" CPU_DEVICES="" PYTHON_BIN="" DRY_RUN=0 EXP_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --cpu-devices | --cpu-devices=*) take_value "$@"; CPU_DEVICES=$VALUE; shift "$NSHIFT" ;;
    --python | --python=*) take_value "$@"; PYTHON_BIN=$VALUE; shift "$NSHIFT" ;;
    --) shift; EXP_ARGS=("$@"); break ;;
    -*) die "unknown option '$1'" ;;
    *) [[ -z $EXP ]] || die "unexpected argument '$1' (experiment flags go after --)"; EXP=$1; shift ;;
  esac
done

[[ -n $EXP ]] || die "missing EXPERIMENT (e.g. synthetic)"
check_experiment "$EXP"
if [[ -z $PYTHON_BIN ]]; then
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then PYTHON_BIN=$REPO_ROOT/.venv/bin/python; else PYTHON_BIN=python3; fi
fi

CMD=()
if [[ -n $CPU_DEVICES ]]; then
  check_int --cpu-devices "$CPU_DEVICES" 1
  XLA="--xla_force_host_platform_device_count=${CPU_DEVICES}"
  CMD=(env JAX_PLATFORMS=cpu "XLA_FLAGS=${XLA_FLAGS:+${XLA_FLAGS} }${XLA}")
fi
CMD+=("$PYTHON_BIN" -m "experiments.${EXP}" ${EXP_ARGS[@]+"${EXP_ARGS[@]}"})

if ((DRY_RUN)); then
  echo "cd $(q "$REPO_ROOT")"
  qjoin "${CMD[@]}"; echo
  exit 0
fi
cd "$REPO_ROOT"
exec "${CMD[@]}"
