#!/usr/bin/env bash
# The augmentation ablation: trains one SimCLR encoder per augmentation set (and one supervised encoder) with
# experiments.images through local.sh, tpu_vm.sh or slurm.sh, then measures them all with
# experiments.decoupling into one report folder.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

ALL_SETS=(none crop crop_flip crop_flip_color simclr)

usage() {
  cat <<USAGE
Usage: ${PROG} [options] [-- LAUNCHER_OPTIONS...]

For each augmentation set S, runs (through launch/LAUNCHER.sh, with LAUNCHER_OPTIONS)
  images -- --config=IMAGE_CONFIG --workdir=WORKDIR/S --config.task=simclr --config.augment.set=S
then a supervised run (SUPERVISED_CONFIG, --config.task=supervised) into WORKDIR/supervised, then
  decoupling -- --config=DECOUPLING_CONFIG --workdir=WORKDIR/report --config.models.source=checkpoints
                --config.models.checkpoints=WORKDIR/S1,...,supervised=WORKDIR/supervised
The report folder then holds every table, figure and the generated summary (docs/decoupling.md).

Options:
  --launcher L            local | tpu_vm | slurm (default: local).
  --workdir DIR           root of the runs (default: runs/ablation); on a multi-host TPU or SLURM job use a
                          directory every host can read.
  --image-config PATH     SimCLR training config (default: experiments/configs/photos_simclr_tiny.py).
  --supervised-config P   supervised training config (default: experiments/configs/photos_supervised_tiny.py).
  --decoupling-config P   measurement config (default: experiments/configs/decoupling_photos_models.py).
  --sets LIST             comma list of augmentation sets (default: ${ALL_SETS[*]// /,}).
  --supervised-set S      augmentation of the supervised encoder, or '' for none (default: crop_flip).
  --train-flag FLAG       extra flag for every training run, e.g. --train-flag=--config.train.steps=500
                          (repeatable).
  --measure-flag FLAG     extra flag for the measurement (repeatable).
  --skip-train            only measure (the runs exist).
  --skip-measure          only train.
  --dry-run               print the exact commands and exit without running anything.
  -h, --help              this help.

Launchers: local runs the trainings one after another, then measures. tpu_vm runs each on every worker (the
ssh session blocks until a run ends); the measurement runs on every worker too and process 0 writes. slurm
submits every training as its own job and the measurement as a one-GPU job named like them with
--dependency=singleton, so it starts when they have all ended; all jobs share the name cl-ablation (or
--job-name given in LAUNCHER_OPTIONS).

Examples:
  ${PROG} --workdir runs/ablation_photos                         # CPU minutes, shipped photos
  ${PROG} --launcher slurm --workdir /shared/abl --image-config experiments/configs/cifar10_simclr_resnet18.py \\
      --supervised-config experiments/configs/cifar10_supervised_wrn34x5.py \\
      --decoupling-config experiments/configs/decoupling_cifar10.py -- --gpus-per-node 8 --partition gpu
USAGE
}

LAUNCHER=local WORKDIR=runs/ablation IMAGE_CONFIG=experiments/configs/photos_simclr_tiny.py
SUPERVISED_CONFIG=experiments/configs/photos_supervised_tiny.py
DECOUPLING_CONFIG=experiments/configs/decoupling_photos_models.py SETS=$(IFS=,; echo "${ALL_SETS[*]}")
SUPERVISED_SET=crop_flip TRAIN_FLAGS=() MEASURE_FLAGS=() SKIP_TRAIN=0 SKIP_MEASURE=0 DRY_RUN=0 LAUNCHER_ARGS=()
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --skip-train) SKIP_TRAIN=1; shift ;;
    --skip-measure) SKIP_MEASURE=1; shift ;;
    --launcher | --launcher=*) take_value "$@"; LAUNCHER=$VALUE; shift "$NSHIFT" ;;
    --workdir | --workdir=*) take_value "$@"; WORKDIR=$VALUE; shift "$NSHIFT" ;;
    --image-config | --image-config=*) take_value "$@"; IMAGE_CONFIG=$VALUE; shift "$NSHIFT" ;;
    --supervised-config | --supervised-config=*) take_value "$@"; SUPERVISED_CONFIG=$VALUE; shift "$NSHIFT" ;;
    --decoupling-config | --decoupling-config=*) take_value "$@"; DECOUPLING_CONFIG=$VALUE; shift "$NSHIFT" ;;
    --sets | --sets=*) take_value "$@"; SETS=$VALUE; shift "$NSHIFT" ;;
    # The supervised set may be empty, and flags are themselves options: take them whole.
    --supervised-set=*) SUPERVISED_SET=${1#*=}; shift ;;
    --supervised-set) (($# >= 2)) || die "--supervised-set needs a value"; SUPERVISED_SET=$2; shift 2 ;;
    --train-flag=*) TRAIN_FLAGS+=("${1#*=}"); shift ;;
    --train-flag) (($# >= 2)) || die "--train-flag needs a value"; TRAIN_FLAGS+=("$2"); shift 2 ;;
    --measure-flag=*) MEASURE_FLAGS+=("${1#*=}"); shift ;;
    --measure-flag) (($# >= 2)) || die "--measure-flag needs a value"; MEASURE_FLAGS+=("$2"); shift 2 ;;
    --) shift; LAUNCHER_ARGS=("$@"); break ;;
    *) die "unknown argument '$1' (launcher options go after --)" ;;
  esac
done

case $LAUNCHER in local | tpu_vm | slurm) ;; *) die "--launcher must be local, tpu_vm or slurm, got '$LAUNCHER'" ;; esac
check_word --workdir "$WORKDIR"
[[ $WORKDIR != *,* && $WORKDIR != *=* ]] || die "--workdir must not hold ',' or '=' (it goes into a checkpoint list), got '$WORKDIR'"
check_word --image-config "$IMAGE_CONFIG"
check_word --supervised-config "$SUPERVISED_CONFIG"
check_word --decoupling-config "$DECOUPLING_CONFIG"
[[ -f $REPO_ROOT/$IMAGE_CONFIG || -f $IMAGE_CONFIG ]] || die "--image-config '$IMAGE_CONFIG' is not a file"
[[ -z $SUPERVISED_SET || -f $REPO_ROOT/$SUPERVISED_CONFIG || -f $SUPERVISED_CONFIG ]] \
  || die "--supervised-config '$SUPERVISED_CONFIG' is not a file"
[[ -f $REPO_ROOT/$DECOUPLING_CONFIG || -f $DECOUPLING_CONFIG ]] \
  || die "--decoupling-config '$DECOUPLING_CONFIG' is not a file"
((SKIP_TRAIN && SKIP_MEASURE)) && die "--skip-train and --skip-measure leave nothing to do"

is_set() { local s; for s in "${ALL_SETS[@]}"; do [[ $1 == "$s" ]] && return 0; done; return 1; }
IFS=, read -r -a SET_LIST <<< "$SETS"
((${#SET_LIST[@]})) || [[ -n $SUPERVISED_SET ]] || die "--sets is empty and there is no --supervised-set"
declare -A SEEN=()
for s in ${SET_LIST[@]+"${SET_LIST[@]}"}; do
  is_set "$s" || die "--sets must be a comma list of ${ALL_SETS[*]}, got '$SETS'"
  [[ -z ${SEEN[$s]+x} ]] || die "--sets must not repeat a set, got '$SETS'"
  SEEN[$s]=1
done
[[ -z $SUPERVISED_SET ]] || is_set "$SUPERVISED_SET" \
  || die "--supervised-set must be '' or one of ${ALL_SETS[*]}, got '$SUPERVISED_SET'"

LAUNCH=(bash "${REPO_ROOT}/launch/${LAUNCHER}.sh")
# slurm: one job name for all runs; the measurement waits for every earlier job of that name.
JOB_NAME=cl-ablation
if [[ $LAUNCHER == slurm ]]; then
  for ((i = 0; i < ${#LAUNCHER_ARGS[@]}; i++)); do
    case ${LAUNCHER_ARGS[i]} in
      --job-name=*) JOB_NAME=${LAUNCHER_ARGS[i]#*=} ;;
      --job-name) JOB_NAME=${LAUNCHER_ARGS[i + 1]:-$JOB_NAME} ;;
    esac
  done
fi

# launcher_opts NAME: the launcher options of one run (slurm: its job name and script file).
launcher_opts() {
  OPTS=(${LAUNCHER_ARGS[@]+"${LAUNCHER_ARGS[@]}"})
  if [[ $LAUNCHER == slurm ]]; then
    local root=$WORKDIR
    [[ $root == /* ]] || root=${REPO_ROOT}/${WORKDIR}
    OPTS+=("--job-name=${JOB_NAME}" "--script=${root}/slurm/${JOB_NAME}-$1.sbatch")
  fi
}

COMMANDS=()  # each entry: one command line, already quoted
CHECKPOINTS=()
if [[ -n $SUPERVISED_SET ]]; then RUNS=(${SET_LIST[@]+"${SET_LIST[@]}"} supervised); else RUNS=("${SET_LIST[@]}"); fi
for run in "${RUNS[@]}"; do
  if [[ $run == supervised ]]; then
    task=supervised set=$SUPERVISED_SET config=$SUPERVISED_CONFIG
    CHECKPOINTS+=("supervised=${WORKDIR}/supervised")
  else
    task=simclr set=$run config=$IMAGE_CONFIG
    CHECKPOINTS+=("${WORKDIR}/${run}")
  fi
  launcher_opts "$run"
  COMMANDS+=("$(qjoin "${LAUNCH[@]}" ${OPTS[@]+"${OPTS[@]}"} images -- "--config=${config}" \
    "--workdir=${WORKDIR}/${run}" "--config.task=${task}" "--config.augment.set=${set}" \
    ${TRAIN_FLAGS[@]+"${TRAIN_FLAGS[@]}"})")
done
((SKIP_TRAIN)) && COMMANDS=()

if ((!SKIP_MEASURE)); then
  launcher_opts report
  case $LAUNCHER in
    slurm) OPTS+=(--nodes=1 --gpus-per-node=1 --sbatch-arg=--dependency=singleton) ;;
  esac
  COMMANDS+=("$(qjoin "${LAUNCH[@]}" ${OPTS[@]+"${OPTS[@]}"} decoupling -- "--config=${DECOUPLING_CONFIG}" \
    "--workdir=${WORKDIR}/report" --config.models.source=checkpoints \
    "--config.models.checkpoints=$(IFS=,; echo "${CHECKPOINTS[*]}")" ${MEASURE_FLAGS[@]+"${MEASURE_FLAGS[@]}"})")
fi

for c in "${COMMANDS[@]}"; do
  if ((DRY_RUN)); then
    printf '%s\n' "$c"
  else
    echo "+ $c" >&2
    eval "$c"
  fi
done
