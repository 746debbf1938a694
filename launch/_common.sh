# Shared by local.sh, tpu_vm.sh and slurm.sh (sourced, not run). Bash 4+.
# Conventions: usage errors print one line to stderr and exit 2; --dry-run prints the exact commands
# (POSIX-shell quoted, one per line) and executes nothing.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROG="$(basename "$0")"

# die MESSAGE: a usage error.
die() {
  echo "${PROG}: error: $* (see ${PROG} --help)" >&2
  exit 2
}

# q ARG: ARG quoted for a POSIX shell, like Python's shlex.quote (bare when it only holds safe characters).
q() {
  local s=$1
  if [[ -n $s && $s =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\"\'\"\'}"
  fi
}

# qjoin ARGS...: the arguments as one shell-quoted command line.
qjoin() {
  local out=() a
  for a in "$@"; do out+=("$(q "$a")"); done
  local IFS=' '
  printf '%s' "${out[*]}"
}

# take_value "$@": the value of an option given as `--opt=value` or `--opt value`.
# Sets VALUE and NSHIFT (how many arguments it used).
take_value() {
  if [[ $1 == *=* ]]; then
    VALUE=${1#*=}
    NSHIFT=1
  elif (($# >= 2)) && [[ $2 != --* ]]; then
    VALUE=$2
    NSHIFT=2
  else
    die "${1} needs a value"
  fi
}

# check_int NAME VALUE MIN [MAX]
check_int() {
  [[ $2 =~ ^[0-9]+$ ]] && (($2 >= $3)) && { (($# < 4)) || (($2 <= $4)); } \
    || die "$1 must be an integer >= $3${4:+ and <= $4}, got '$2'"
}

# check_word NAME VALUE: non-empty, no whitespace (values that end up in #SBATCH lines or gcloud flags).
check_word() {
  [[ -n $2 && ! $2 =~ [[:space:]] ]] || die "$1 must be non-empty without spaces, got '$2'"
}

# check_experiment NAME: a module name under experiments/ (synthetic, images, decoupling, ...).
check_experiment() {
  [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
    || die "EXPERIMENT must be a module name under experiments/ (e.g. synthetic), got '$1'"
}
