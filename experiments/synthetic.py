r"""The paper's synthetic experiment (sparse coding + symmetric thresholded ReLUs + InfoNCE).

    python -m experiments.synthetic --config=experiments/configs/synthetic.py --workdir=runs/synthetic \
        [--config.arms=complementary_mask,none] [--config.data.d1=512 ...]
"""

from absl import app, flags
from ml_collections import config_flags

from cl_features.train import synthetic

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "experiments/configs/synthetic.py", "Experiment config file.")
flags.DEFINE_string("workdir", "runs/synthetic", "Directory for metrics, weights, summary and figures.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = synthetic.validate(FLAGS.config)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    summary = synthetic.run(config, FLAGS.workdir)
    print(f"wrote {FLAGS.workdir}/summary.json, summary.md and figures")
    del summary


if __name__ == "__main__":
    app.run(main)
