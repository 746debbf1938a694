#!/usr/bin/env bash
# Runs an experiment on this machine, optionally on N forced CPU devices and/or as P processes
# (a stand-in for a multi-host run: P processes meet through jax.distributed on localhost).
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
  --processes P     start P processes on localhost (default 1), each with JAX_COORDINATOR_ADDRESS,
                    JAX_NUM_PROCESSES and JAX_PROCESS_ID set, and wait for all of them; the
                    experiment's main initialises jax.distributed from them (--distributed=auto).
  --port PORT       coordinator port for --processes > 1 (default: 12355).
  --python PY       interpreter, used as given (default: .venv/bin/python if present, else python3;
                    before the run, a one-line Python check stops with the fix when the default is
                    older than the package's minimum, Python ${MIN_PYTHON}).
  --no-check        skip that check.
  --dry-run         print the exact commands and exit without running anything.
  -h, --help        this help.

Example:
  ${PROG} --cpu-devices 4 synthetic -- --config=experiments/configs/synthetic.py --workdir=runs/synthetic
USAGE
}

EXP="" CPU_DEVICES="" PROCESSES=1 PORT=12355 PYTHON_BIN="" DRY_RUN=0 CHECK=1 EXP_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-check) CHECK=0; shift ;;
    --cpu-devices | --cpu-devices=*) take_value "$@"; CPU_DEVICES=$VALUE; shift "$NSHIFT" ;;
    --processes | --processes=*) take_value "$@"; PROCESSES=$VALUE; shift "$NSHIFT" ;;
    --port | --port=*) take_value "$@"; PORT=$VALUE; shift "$NSHIFT" ;;
    --python | --python=*) take_value "$@"; PYTHON_BIN=$VALUE; shift "$NSHIFT" ;;
    --) shift; EXP_ARGS=("$@"); break ;;
    -*) die "unknown option '$1'" ;;
    *) [[ -z $EXP ]] || die "unexpected argument '$1' (experiment flags go after --)"; EXP=$1; shift ;;
  esac
done

[[ -n $EXP ]] || die "missing EXPERIMENT (e.g. synthetic)"
check_experiment "$EXP"
check_int --processes "$PROCESSES" 1
check_int --port "$PORT" 1 65535
CHECK_LINE=""
if [[ -z $PYTHON_BIN ]]; then
  if [[ -x $REPO_ROOT/.venv/bin/python ]]; then PYTHON_BIN=$REPO_ROOT/.venv/bin/python; else PYTHON_BIN=python3; fi
  ((!CHECK)) || CHECK_LINE=$(check_command "$PYTHON_BIN" "make a .venv with Python ${MIN_PYTHON} or newer: \
make install PYTHON=python${MIN_PYTHON} (in ${REPO_ROOT}), or pass --python")
fi

ENV=()
if [[ -n $CPU_DEVICES ]]; then
  check_int --cpu-devices "$CPU_DEVICES" 1
  XLA="--xla_force_host_platform_device_count=${CPU_DEVICES}"
  ENV=(JAX_PLATFORMS=cpu "XLA_FLAGS=${XLA_FLAGS:+${XLA_FLAGS} }${XLA}")
fi
RUN=("$PYTHON_BIN" -m "experiments.${EXP}" ${EXP_ARGS[@]+"${EXP_ARGS[@]}"})

# process_command I: process I's command line (for one process: no coordinator variables).
process_command() {
  local env=(${ENV[@]+"${ENV[@]}"})
  if ((PROCESSES > 1)); then
    env+=("JAX_COORDINATOR_ADDRESS=127.0.0.1:${PORT}" "JAX_NUM_PROCESSES=${PROCESSES}" "JAX_PROCESS_ID=$1")
  fi
  if ((${#env[@]})); then CMD=(env "${env[@]}" "${RUN[@]}"); else CMD=("${RUN[@]}"); fi
}

if ((DRY_RUN)); then
  echo "cd $(q "$REPO_ROOT")"
  [[ -z $CHECK_LINE ]] || echo "$CHECK_LINE"
  if ((PROCESSES == 1)); then
    process_command 0; qjoin "${CMD[@]}"; echo
  else
    for ((i = 0; i < PROCESSES; i++)); do process_command "$i"; echo "$(qjoin "${CMD[@]}") &"; done
    echo "wait"
  fi
  exit 0
fi
cd "$REPO_ROOT"
[[ -z $CHECK_LINE ]] || eval "$CHECK_LINE" || exit 1
if ((PROCESSES == 1)); then
  process_command 0
  exec "${CMD[@]}"
fi
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' INT TERM
for ((i = 0; i < PROCESSES; i++)); do
  process_command "$i"
  "${CMD[@]}" &
  PIDS+=($!)
done
STATUS=0
for pid in "${PIDS[@]}"; do wait "$pid" || STATUS=$?; done
exit "$STATUS"
