r"""The paper's synthetic experiment (sparse coding + symmetric thresholded ReLUs + InfoNCE).

    python -m experiments.synthetic --config=experiments/configs/synthetic.py --workdir=runs/synthetic \
        [--config.arms=complementary_mask,none] [--config.data.d1=512 ...]

Started again with the same command in the same workdir, it resumes from the newest checkpoints
(<workdir>/<arm>/checkpoints). SIGTERM saves at the next step boundary and exits 0. Multi-host: see launch/.
"""

import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from cl_features.synthetic import arms
from cl_features.train import checkpoint, distributed

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py", "Experiment config file.")
flags.DEFINE_string("workdir", "runs/synthetic", "Directory for metrics, weights, summary and figures.")
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = arms.validate(FLAGS.config)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    try:
        info = distributed.initialize_from_flags()  # before any other JAX call
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if info.process_count > 1:
        distributed.log_once(f"{info.process_count} processes")
    try:
        arms.run(config, FLAGS.workdir)
    except checkpoint.Preempted as e:
        distributed.log_once(
            f"preempted: saved step {e.step} in {e.directory}. Resume with the same command:\n"
            f"  {shlex.join(sys.orig_argv)}"
        )
        return 0
    except (ValueError, FloatingPointError) as e:  # config mismatch on resume, batch/devices, non-finite loss
        raise SystemExit(f"error: {e}") from None
    distributed.log_once(f"wrote {FLAGS.workdir}/summary.json, summary.md and figures")


if __name__ == "__main__":
    app.run(main)
