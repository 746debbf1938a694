"""What every experiment's main does: flags, validate, start multi-host JAX, run, report in one line.

Bad input of any kind (a config value, a resumed config that changes the run, missing data, a non-finite loss)
ends the command with one line `error: ...` and a non-zero exit status; a preemption notice saves, prints the
command that resumes the run and exits 0.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_flags

from cl_features.train import checkpoint, distributed

FLAGS = flags.FLAGS


def experiment_main(
    default_config: str, default_workdir: str, workdir_help: str, *, validate: Callable, run: Callable, done: Callable
) -> Callable[[list[str]], int]:
    """Defines --config, --workdir and the multi-host flags; returns main(argv) for `app.run`.

    main: validate(config) -> jax.distributed start-up -> out = run(config, workdir) -> prints done(workdir, out).
    """
    config_flags.DEFINE_config_file("config", default_config, "Experiment config file.")
    flags.DEFINE_string("workdir", default_workdir, workdir_help)
    distributed.define_flags()

    def main(argv) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            config = validate(FLAGS.config)  # before any JAX call: a bad value costs nothing
            info = distributed.initialize_from_flags()
            if info.process_count > 1:
                distributed.log_once(f"{info.process_count} processes")
            out = run(config, FLAGS.workdir)
        except checkpoint.Preempted as e:
            distributed.log_once(
                f"preempted: saved step {e.step} in {e.directory}. Resume with the same command:\n"
                f"  {shlex.join(sys.orig_argv)}"
            )
            return 0
        except (ValueError, FileNotFoundError, FloatingPointError) as e:
            raise SystemExit(f"error: {e}") from None
        distributed.log_once(done(FLAGS.workdir, out))
        return 0

    return main
