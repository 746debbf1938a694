r"""Image experiments: SimCLR or supervised training with kNN monitoring and a linear probe (docs/images.md).

    python -m experiments.images --config=experiments/configs/cifar10_simclr_resnet18.py --workdir=runs/c10_r18 \
        [--config.data.data_dir=/data/tfds] [--config.train.epochs=100 ...]

Each config's docstring gives its command, what it shows and the expected result and time. Multi-host runs
start the same command on every host (launch/); `--distributed` etc. come from cl_features.train.distributed.
"""

from absl import app, flags
from ml_collections import config_flags

from cl_features.train import distributed, images

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/photos_simclr_tiny.py", "Experiment config file.")
flags.DEFINE_string("workdir", "runs/images", "Directory for metrics.jsonl and summary.json.")
distributed.define_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()
    try:
        config = images.validate(FLAGS.config)
        data = images.open_data(config)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}")
    images.run(config, FLAGS.workdir, data=data)
    distributed.log_once(f"wrote {FLAGS.workdir}/metrics.jsonl and summary.json")


if __name__ == "__main__":
    app.run(main)
