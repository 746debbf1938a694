"""What every experiment's main does: flags, validate, start multi-host JAX, run, report in one line.

Bad input (a config field, config name, workdir, a resume that changes the run, missing data) ends with one line
`error: ...` on stderr, status 2, before anything is written; a non-finite loss or a held workdir with status 1;
a preemption saves, prints the command that resumes and exits 0.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import pkgutil
import shlex
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from cl_features import workdir as workdir_lib
from cl_features.train import distributed

FLAGS = flags.FLAGS


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def configs_package():
    """A checkout's experiments.configs (beside this cl_features/), else the installed cl_features.experiments."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.find_spec("experiments")
    if spec is not None and spec.origin and os.path.dirname(os.path.dirname(os.path.abspath(spec.origin))) == root:
        return importlib.import_module("experiments.configs")
    if importlib.util.find_spec("cl_features.experiments") is not None:
        return importlib.import_module("cl_features.experiments.configs")
    raise UsageError("cannot find the experiment configs: install the package or run from the repository root")


def _is_config(pkg, name: str) -> bool:
    """Whether `pkg` has a module `name` with a get_config (reads that one file)."""
    try:
        with open(os.path.join(pkg.__path__[0], name + ".py")) as f:
            return "\ndef get_config(" in f.read()
    except OSError:
        return False


def config_names() -> list[str]:
    """Names of the shipped configs (the modules with a get_config)."""
    pkg = configs_package()
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if _is_config(pkg, m.name))


def load_config(spec: str):
    """`NAME[:ARG]` (a shipped config) or `PATH[:ARG]` (a config file) -> get_config(*ARG)."""
    where, *arg = spec.split(":", 1)
    is_path = os.sep in where or where.endswith(".py")
    pkg, is_file = configs_package(), is_path and os.path.isfile(where)
    if is_file and os.path.dirname(os.path.realpath(where)) != os.path.realpath(pkg.__path__[0]):
        module_spec = importlib.util.spec_from_file_location("config_" + os.path.basename(where)[:-3], where)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        name = os.path.basename(where)[:-3] if is_file else where
        if (is_path and not is_file) or not _is_config(pkg, name):
            what = f"config file {where!r} not found (from {os.getcwd()})" if is_path else f"no config {where!r}"
            raise UsageError(
                f"--config: {what}; give a config file or the name of a shipped config: {', '.join(config_names())}"
            )
        module = importlib.import_module(f"{pkg.__name__}.{name}")
    return module.get_config(*arg)


class _ConfigParser(flags.ArgumentParser):
    """--config's parser: a shipped config's name or a config file's path (load_config)."""

    def parse(self, spec):
        config = load_config(spec)
        config.lock()
        return config

    def flag_type(self):
        return "config object"


def _override_error(argv: list[str], default: str) -> str | None:
    """'--config.a.b: ...' for the first --config.a.b=... override that names no field of the config."""
    spec = default
    for i, a in enumerate(argv):
        spec = a.split("=", 1)[1] if a.startswith("--config=") else argv[i + 1] if a == "--config" else spec
    config = load_config(spec)
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path, node = arg.split("=", 1)[0][len("--config.") :].split("."), config
        for i, key in enumerate(path):
            parent = ".".join(path[:i])
            if not hasattr(node, "keys"):
                return f"--config.{'.'.join(path)}: config.{parent} is a value ({node!r}), not a group of fields"
            fields = list(node.keys())
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"did you mean --config.{'.'.join([*path[:i], close[0]])}? " if close else ""
                where = f"config.{parent}" if parent else "the config"
                return f"--config.{'.'.join(path)}: {where} has no field {key!r}; {hint}fields: {', '.join(fields)}"
            node = node[key]
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every error as one line `error: ...` and exit status 2."""
    try:
        return FLAGS(argv)
    except (flags.Error, UsageError) as e:
        fail(str(e))
    except (AttributeError, KeyError) as e:  # an override naming no field (ml_collections' own message is long)
        fail(_override_error(argv, getattr(FLAGS["config"], "default_unparsed", None)) or f"{type(e).__name__}: {e}")


def fail(message: str, status: int = 2):
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(status)


def run(main: Callable) -> None:
    """`app.run(main)` with one-line flag errors; what every experiment's `__main__` calls."""
    app.run(main, flags_parser=parse_flags)


def experiment_main(
    default_config: str, default_workdir: str, workdir_help: str, *, driver: str, done: Callable
) -> Callable[[list[str]], int]:
    """Defines --config (default: the shipped `default_config`), --workdir, --print_config and the multi-host
    flags; returns main(argv) for `run`: workdir check -> driver.validate(config) -> jax.distributed -> workdir
    lock -> out = driver.run(config, workdir) -> prints done(workdir, out). driver: a module name, imported late
    (it imports JAX).
    """
    config_flags.DEFINE_config_file("config", None, "Config: a shipped config's name, or a config file's path.")
    FLAGS["config"].parser = _ConfigParser()
    try:  # without --config on the command line, the default is loaded and overridden here
        FLAGS.set_default("config", default_config)
    except (AttributeError, KeyError) as e:
        fail(_override_error(sys.argv, default_config) or f"{type(e).__name__}: {e}")
    flags.DEFINE_string("workdir", default_workdir, workdir_help)
    flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit (runs and writes nothing).")
    distributed.define_flags()
    for name in ("config", "workdir", "print_config"):  # listed by --help
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

    def main(argv) -> int:
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}: flags only (--config=NAME, --workdir=DIR, --config.FIELD=VALUE)")
        workdir = FLAGS.workdir
        if not FLAGS.print_config:
            try:
                workdir_lib.check_creatable(workdir)
            except ValueError as e:
                fail(str(e))
        from cl_features.train import checkpoint  # JAX: only once the flags and the workdir are good

        try:
            module = importlib.import_module(driver)
            config = module.validate(FLAGS.config)  # before any JAX call: a bad value costs nothing
            if FLAGS.print_config:
                print(json.dumps(config.to_dict(), indent=2, default=str))
                return 0
            info = distributed.initialize_from_flags()
            if info.process_count > 1:
                distributed.log_once(f"{info.process_count} processes")
            with workdir_lib.lock(workdir):
                out = module.run(config, workdir)
        except checkpoint.Preempted as e:
            distributed.log_once(
                f"preempted: saved step {e.step} in {e.directory}. Resume with the same command:\n"
                f"  {shlex.join(sys.orig_argv)}"
            )
            return 0
        except (ValueError, FileNotFoundError, UsageError) as e:
            fail(str(e))
        except (FloatingPointError, workdir_lib.Held) as e:
            fail(str(e), status=1)
        distributed.log_once(done(workdir, out))
        return 0

    return main
