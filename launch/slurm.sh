#!/usr/bin/env bash
# Writes an sbatch script that runs an experiment with one task per GPU, and submits it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

usage() {
  cat <<USAGE
Usage: ${PROG} --gpus-per-node G [options] EXPERIMENT [-- EXPERIMENT_FLAGS...]
       ${PROG} --setup [options] [--gpus-per-node G EXPERIMENT [-- EXPERIMENT_FLAGS...]]

Writes an sbatch script (NODES x G tasks, one per GPU) that runs
\`srun VENV/bin/python -m experiments.EXPERIMENT EXPERIMENT_FLAGS...\` in REPO_DIR, then submits it with sbatch.
Before srun, the job runs a one-line Python check that stops it with the fix (in the job's log) unless VENV's
Python is ${MIN_PYTHON} or newer and jax's backend is the GPU. Inside the job JAX_COORDINATOR_ADDRESS is the first
host of SLURM_JOB_NODELIST and PORT; every task's process id, process count and GPU (SLURM_LOCALID) come from
JAX's SLURM auto-detection.

Options:
  --gpus-per-node G   GPUs (= tasks) per node (required with EXPERIMENT).
  --nodes N           nodes (default: 1).
  --cpus-per-task C   CPU cores per task (default: 8).
  --time T            wall-clock limit (default: 04:00:00).
  --partition P       SLURM partition (default: the cluster's default).
  --account A         SLURM account (default: none).
  --job-name J        job name (default: cl-EXPERIMENT).
  --port PORT         coordinator port (default: auto = 61440 + SLURM_JOB_ID % 4096, as JAX picks).
  --repo-dir DIR      checkout the job runs in, on the cluster's shared filesystem
                      (default: this checkout, ${REPO_ROOT}).
  --venv DIR          virtual environment whose bin/python runs the job, relative to REPO_DIR or absolute
                      (default: .venv).
  --setup             first, here (a login node: it needs the network, not a GPU): install uv (pip install
                      --user uv, unless --uv), make VENV with Python PYTHON_VERSION if it does not exist, install
                      the package and JAX_SPEC into it, and check its Python and jax's CUDA plugin.
  --python-version V  Python of a new VENV, ${MIN_PYTHON} or newer (default: ${SETUP_PYTHON}); uv downloads it when
                      this machine has no such Python.
  --cuda 12|13        CUDA of the jax build that --setup installs (default: 12; CUDA 13 needs a newer NVIDIA
                      driver, see JAX's installation guide).
  --jax-spec SPEC     JAX requirement installed by --setup (default: jax[cudaCUDA]${JAX_RANGE}, the package's range).
  --uv UV             uv executable (default: python3 -m uv, installed by --setup).
  --no-check          submit a job without the check.
  --prelude LINE      a shell line run before the check and srun, e.g. 'module load cuda' (repeatable).
  --sbatch-arg ARG    an extra #SBATCH line, e.g. --sbatch-arg=--qos=high (repeatable).
  --output PATTERN    job log, relative to REPO_DIR (default: slurm-%x-%j.out).
  --script PATH       where to write the sbatch script (default: REPO_DIR/runs/slurm/JOB_NAME.sbatch).
  --print             print the sbatch script and exit (nothing written or submitted).
  --dry-run           print the exact commands (setup, write the script, sbatch it) and exit without running them.
  -h, --help          this help.

Example:
  ${PROG} --setup
  ${PROG} --nodes 2 --gpus-per-node 8 --partition gpu synthetic -- \\
      --config=experiments/configs/synthetic.py --workdir=runs/synthetic
USAGE
}

GPUS="" NODES=1 CPUS=8 TIME=04:00:00 PARTITION="" ACCOUNT="" JOB_NAME="" PORT=auto VENV=.venv SETUP=0
PYTHON_VERSION=$SETUP_PYTHON CUDA=12 JAX_SPEC="" UV="" CHECK=1 REPO_DIR=$REPO_ROOT OUTPUT="slurm-%x-%j.out"
SCRIPT="" PRINT=0 DRY_RUN=0 EXP="" EXP_ARGS=() PRELUDE=() SBATCH_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --print) PRINT=1; shift ;;
    --setup) SETUP=1; shift ;;
    --no-check) CHECK=0; shift ;;
    --gpus-per-node | --gpus-per-node=*) take_value "$@"; GPUS=$VALUE; shift "$NSHIFT" ;;
    --nodes | --nodes=*) take_value "$@"; NODES=$VALUE; shift "$NSHIFT" ;;
    --cpus-per-task | --cpus-per-task=*) take_value "$@"; CPUS=$VALUE; shift "$NSHIFT" ;;
    --time | --time=*) take_value "$@"; TIME=$VALUE; shift "$NSHIFT" ;;
    --partition | --partition=*) take_value "$@"; PARTITION=$VALUE; shift "$NSHIFT" ;;
    --account | --account=*) take_value "$@"; ACCOUNT=$VALUE; shift "$NSHIFT" ;;
    --job-name | --job-name=*) take_value "$@"; JOB_NAME=$VALUE; shift "$NSHIFT" ;;
    --port | --port=*) take_value "$@"; PORT=$VALUE; shift "$NSHIFT" ;;
    --venv | --venv=*) take_value "$@"; VENV=$VALUE; shift "$NSHIFT" ;;
    --python-version | --python-version=*) take_value "$@"; PYTHON_VERSION=$VALUE; shift "$NSHIFT" ;;
    --cuda | --cuda=*) take_value "$@"; CUDA=$VALUE; shift "$NSHIFT" ;;
    --jax-spec | --jax-spec=*) take_value "$@"; JAX_SPEC=$VALUE; shift "$NSHIFT" ;;
    --uv | --uv=*) take_value "$@"; UV=$VALUE; shift "$NSHIFT" ;;
    --repo-dir | --repo-dir=*) take_value "$@"; REPO_DIR=$VALUE; shift "$NSHIFT" ;;
    --prelude | --prelude=*) take_value "$@"; PRELUDE+=("$VALUE"); shift "$NSHIFT" ;;
    --output | --output=*) take_value "$@"; OUTPUT=$VALUE; shift "$NSHIFT" ;;
    --script | --script=*) take_value "$@"; SCRIPT=$VALUE; shift "$NSHIFT" ;;
    # An #SBATCH argument is itself an option: take it whole from --sbatch-arg=ARG or the next word.
    --sbatch-arg=*) SBATCH_ARGS+=("${1#*=}"); shift ;;
    --sbatch-arg) (($# >= 2)) || die "--sbatch-arg needs a value"; SBATCH_ARGS+=("$2"); shift 2 ;;
    --) shift; EXP_ARGS=("$@"); break ;;
    -*) die "unknown option '$1'" ;;
    *) [[ -z $EXP ]] || die "unexpected argument '$1' (experiment flags go after --)"; EXP=$1; shift ;;
  esac
done

if [[ -n $EXP ]]; then
  check_experiment "$EXP"
  [[ -n $GPUS ]] || die "missing --gpus-per-node (GPUs per node; one task runs per GPU)"
elif ((!SETUP)); then
  die "missing EXPERIMENT (e.g. synthetic)"
elif ((${#EXP_ARGS[@]})); then
  die "experiment flags given but no EXPERIMENT"
fi
((!PRINT || !SETUP)) || die "--print only prints the job script; --setup runs here (see it with --dry-run)"
[[ -z $GPUS ]] || check_int --gpus-per-node "$GPUS" 1
check_int --nodes "$NODES" 1
check_int --cpus-per-task "$CPUS" 1
[[ $PORT == auto ]] || check_int --port "$PORT" 1 65535
[[ -n $JOB_NAME ]] || JOB_NAME="cl-${EXP:-setup}"
for pair in "--time:$TIME" "--job-name:$JOB_NAME" "--output:$OUTPUT" "--repo-dir:$REPO_DIR" "--venv:$VENV"; do
  check_word "${pair%%:*}" "${pair#*:}"
done
[[ -z $PARTITION ]] || check_word --partition "$PARTITION"
[[ -z $ACCOUNT ]] || check_word --account "$ACCOUNT"
for a in ${SBATCH_ARGS[@]+"${SBATCH_ARGS[@]}"}; do
  [[ $a == --* ]] || die "--sbatch-arg must be an sbatch option like --qos=high, got '$a'"
  check_word --sbatch-arg "$a"
done
[[ $CUDA == 12 || $CUDA == 13 ]] || die "--cuda must be 12 or 13, got '$CUDA'"
[[ -n $JAX_SPEC ]] || JAX_SPEC="jax[cuda${CUDA}]${JAX_RANGE}"
if ((SETUP)); then
  check_python_version --python-version "$PYTHON_VERSION"
  check_word --jax-spec "$JAX_SPEC"
  [[ -z $UV ]] || check_word --uv "$UV"
fi
[[ -n $SCRIPT ]] || SCRIPT="${REPO_DIR}/runs/slurm/${JOB_NAME}.sbatch"
if [[ $VENV == /* ]]; then VENV_PATH=$VENV; else VENV_PATH=${REPO_DIR%/}/${VENV}; fi
PY=${VENV_PATH}/bin/python
HINT="launch/slurm.sh --setup"
[[ $REPO_DIR == "$REPO_ROOT" ]] || HINT+=" $(q "--repo-dir=${REPO_DIR}")"
[[ $VENV == .venv ]] || HINT+=" $(q "--venv=${VENV}")"
if [[ $JAX_SPEC != "jax[cuda${CUDA}]${JAX_RANGE}" ]]; then HINT+=" $(q "--jax-spec=${JAX_SPEC}")"
elif [[ $CUDA != 12 ]]; then HINT+=" --cuda=${CUDA}"; fi

if [[ $PORT == auto ]]; then PORT_EXPR='$(( SLURM_JOB_ID % 4096 + 61440 ))'; else PORT_EXPR=$PORT; fi

sbatch_script() {
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=${JOB_NAME}"
  echo "#SBATCH --nodes=${NODES}"
  echo "#SBATCH --ntasks-per-node=${GPUS}"
  echo "#SBATCH --gpus-per-node=${GPUS}"
  echo "#SBATCH --cpus-per-task=${CPUS}"
  echo "#SBATCH --time=${TIME}"
  echo "#SBATCH --chdir=${REPO_DIR}"
  echo "#SBATCH --output=${OUTPUT}"
  [[ -z $PARTITION ]] || echo "#SBATCH --partition=${PARTITION}"
  [[ -z $ACCOUNT ]] || echo "#SBATCH --account=${ACCOUNT}"
  for a in ${SBATCH_ARGS[@]+"${SBATCH_ARGS[@]}"}; do echo "#SBATCH ${a}"; done
  echo "# Written by launch/slurm.sh. One task per GPU: JAX's SLURM detection gives each task its"
  echo "# process id (SLURM_PROCID), the process count (SLURM_NTASKS) and its GPU (SLURM_LOCALID)."
  echo "set -eo pipefail"
  echo "cd $(q "$REPO_DIR")"
  for line in ${PRELUDE[@]+"${PRELUDE[@]}"}; do echo "$line"; done
  echo "set -u"
  if ((CHECK)); then
    missing_python_guard "$PY" "run ${HINT} first"
    echo
    echo "XLA_PYTHON_CLIENT_PREALLOCATE=false $(check_command "$PY" "run ${HINT} after deleting ${VENV_PATH}" gpu \
      "install the CUDA build of jax with ${HINT}, and give the job GPUs (--gpus-per-node)")"
  fi
  echo "COORDINATOR_HOST=\$(scontrol show hostnames \"\$SLURM_JOB_NODELIST\" | awk 'NR == 1')"
  echo "export JAX_COORDINATOR_ADDRESS=\"\${COORDINATOR_HOST}:${PORT_EXPR}\""
  echo "echo \"JAX coordinator: \${JAX_COORDINATOR_ADDRESS}, tasks: \${SLURM_NTASKS}\""
  echo "srun --kill-on-bad-exit=1 --cpus-per-task=${CPUS} $(qjoin "$PY" -m "experiments.${EXP}" ${EXP_ARGS[@]+"${EXP_ARGS[@]}"})"
}

# The setup, run here: uv, the environment, the package with the CUDA build of jax, then the checks (no GPU here,
# so the second one asks only that a CUDA plugin of jax is installed).
SETUP_COMMANDS=()
if ((SETUP)); then
  if [[ -n $UV ]]; then UV_CMD=$(q "$UV"); else UV_CMD="python3 -m uv"; fi
  [[ -n $UV ]] || SETUP_COMMANDS+=("PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --quiet --upgrade uv")
  SETUP_COMMANDS+=("test -x $(q "$PY") || ${UV_CMD} venv --python $(q "$PYTHON_VERSION") $(q "$VENV_PATH")")
  SETUP_COMMANDS+=("${UV_CMD} pip install --python $(q "$PY") -e $(q "$REPO_DIR") $(q "$JAX_SPEC")")
  SETUP_COMMANDS+=("$(check_command "$PY" "delete ${VENV_PATH} and run ${HINT} again")")
  SETUP_COMMANDS+=("$(qjoin "$PY" -c "$PLUGIN_CHECK" "$PROG" "$JAX_SPEC")")
fi

if ((PRINT)); then
  sbatch_script
  exit 0
fi
if ((DRY_RUN)); then
  for c in ${SETUP_COMMANDS[@]+"${SETUP_COMMANDS[@]}"}; do printf '%s\n' "$c"; done
  [[ -n $EXP ]] || exit 0
  echo "mkdir -p $(q "$(dirname "$SCRIPT")")"
  echo "cat > $(q "$SCRIPT") <<'SBATCH_EOF'"
  sbatch_script
  echo "SBATCH_EOF"
  echo "sbatch $(q "$SCRIPT")"
  exit 0
fi
for c in ${SETUP_COMMANDS[@]+"${SETUP_COMMANDS[@]}"}; do
  echo "+ $c" >&2
  eval "$c"
done
[[ -n $EXP ]] || exit 0
mkdir -p "$(dirname "$SCRIPT")"
sbatch_script > "$SCRIPT"
echo "wrote ${SCRIPT}" >&2
sbatch "$SCRIPT"
