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

# What the package needs, read from pyproject.toml so that the launchers and the package agree:
# MIN_PYTHON (requires-python, e.g. 3.11) and JAX_RANGE (the jax requirement, e.g. >=0.7,<0.13).
PYPROJECT=$REPO_ROOT/pyproject.toml
MIN_PYTHON=$(sed -n 's/^requires-python *= *">= *\([0-9][0-9.]*\)"$/\1/p' "$PYPROJECT" 2> /dev/null || true)
JAX_RANGE=$(sed -n 's/^ *"jax *\([<>=!~][^"]*\)",\{0,1\}$/\1/p' "$PYPROJECT" 2> /dev/null || true)
[[ -n $MIN_PYTHON && -n $JAX_RANGE ]] || die "cannot read requires-python and the jax requirement from ${PYPROJECT}"
# The Python that --setup puts into a new virtual environment.
SETUP_PYTHON=3.11

# version_ge A B: whether version A (X.Y[.Z]) is at least B (X.Y).
version_ge() {
  local a=(${1//./ }) b=(${2//./ })
  ((a[0] > b[0] || (a[0] == b[0] && a[1] >= b[1])))
}

# check_python_version NAME VALUE: X.Y or X.Y.Z, at least MIN_PYTHON.
check_python_version() {
  [[ $2 =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] && version_ge "$2" "$MIN_PYTHON" \
    || die "$1 must be a Python version ${MIN_PYTHON} or newer (e.g. ${SETUP_PYTHON}), got '$2'"
}

# The pre-flight check, one line of Python run by the interpreter that will run the experiment:
#   PY -c "$PY_CHECK" PROG MIN_PYTHON FIX [BACKEND BACKEND_FIX]
# exits 1 with one line (host, interpreter, what is wrong, FIX) when PY is older than MIN_PYTHON or, given BACKEND
# (tpu, gpu), when jax's default backend is another; otherwise prints one line saying what it found (to stderr).
PY_CHECK='import importlib.util as u, socket, sys; a = sys.argv + ["", ""]; v = sys.version_info; '\
'w = "%s: on %s, %s" % (a[1], socket.gethostname(), sys.executable); v >= tuple(map(int, a[2].split("."))) '\
'or sys.exit("%s is Python %d.%d, the package needs %s or newer: %s" % (w, v[0], v[1], a[2], a[3])); '\
'b = a[4] and (u.find_spec("jax") and __import__("jax").default_backend() or "none (no jax)"); '\
'b == a[4] or sys.exit("%s: the jax backend is %s, not %s: %s" % (w, b, a[4], a[5])); '\
'print(w + ": Python " + sys.version.split()[0] + (a[4] and ", jax %s on %d %s devices" '\
'% (sys.modules["jax"].__version__, sys.modules["jax"].device_count(), b)), file=sys.stderr)'

# PY -c "$PLUGIN_CHECK" PROG JAX_SPEC: stops with one line unless a CUDA plugin of jax is installed.
PLUGIN_CHECK='import importlib.metadata as m, socket, sys; a = sys.argv; '\
'p = sorted("%s %s" % (d.metadata["Name"], d.version) for d in m.distributions() '\
'if (d.metadata["Name"] or "").lower().replace("_", "-").startswith("jax-cuda")); '\
'p or sys.exit("%s: on %s, %s has no CUDA plugin of jax: install %s into it" '\
'% (a[1], socket.gethostname(), sys.executable, a[2])); '\
'print("%s: %s has jax %s, %s" % (a[1], sys.executable, m.version("jax"), ", ".join(p)), file=sys.stderr)'

# check_command PY FIX [BACKEND BACKEND_FIX]: the pre-flight check as one quoted command line.
check_command() {
  qjoin "$1" -c "$PY_CHECK" "$PROG" "$MIN_PYTHON" "${@:2}"
}

# missing_python_guard PY FIX: a shell command that stops with one line when PY is not an executable file.
missing_python_guard() {
  printf '{ [ -x %s ] || { echo "%s: on $(hostname), "%s >&2; exit 1; }; }' "$(q "$1")" "$PROG" \
    "$(q "there is no $1: $2")"
}
