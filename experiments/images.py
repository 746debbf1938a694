r"""Image experiments: SimCLR or supervised training with kNN monitoring and a linear probe (docs/images.md).

    python -m experiments.images --config=experiments/configs/cifar10_simclr_resnet18.py --workdir=runs/c10_r18 \
        [--config.data.data_dir=/data/tfds] [--config.train.epochs=100 ...]

Each config's docstring gives its command, what it shows and the expected result and time. Started again with
the same command in the same workdir, a run resumes from its newest checkpoint (<workdir>/checkpoints);
SIGTERM saves at the next step boundary and exits 0. Multi-host runs start the same command on every host
(launch/); `--distributed` etc. come from cl_features.train.distributed.
"""

import shlex
import sys

from absl import app, flags
from ml_collections import config_flags

from cl_features.train import checkpoint, distributed, images

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/photos_simclr_tiny.py", "Experiment config file.")
flags.DEFINE_string("workdir", "runs/images", "Directory for metrics.jsonl, summary.json and checkpoints.")
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = images.validate(FLAGS.config)
        info = distributed.initialize_from_flags()  # before any other JAX call
        data = images.open_data(config)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if info.process_count > 1:
        distributed.log_once(f"{info.process_count} processes")
    try:
        images.run(config, FLAGS.workdir, data=data)
    except checkpoint.Preempted as e:
        distributed.log_once(
            f"preempted: saved step {e.step} in {e.directory}. Resume with the same command:\n"
            f"  {shlex.join(sys.orig_argv)}"
        )
        return 0
    except (ValueError, FloatingPointError) as e:  # config mismatch on resume, batch/devices, non-finite loss
        raise SystemExit(f"error: {e}") from None
    distributed.log_once(f"wrote {FLAGS.workdir}/metrics.jsonl, summary.json and checkpoints")


if __name__ == "__main__":
    app.run(main)
