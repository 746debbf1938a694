r"""Image experiments: SimCLR or supervised training with kNN monitoring and a linear probe (docs/images.md).

    python -m experiments.images --config=experiments/configs/cifar10_simclr_resnet18.py --workdir=runs/c10_r18 \
        [--config.data.data_dir=/data/tfds] [--config.train.epochs=100 ...]

Each config's docstring gives its command, what it shows and the expected result and time. Started again with
the same command in the same workdir, a run resumes from its newest checkpoint (<workdir>/checkpoints);
SIGTERM saves at the next step boundary and exits 0. Multi-host runs start the same command on every host
(launch/); `--distributed` etc. come from cl_features.train.distributed.
"""

from cl_features import cli

main = cli.experiment_main(
    "photos_simclr_tiny",
    "runs/images",
    "Directory for metrics.jsonl, summary.json and checkpoints.",
    driver="cl_features.image_training.trainer",
    done=lambda workdir, _: f"wrote {workdir}/metrics.jsonl, summary.json and checkpoints",
)

if __name__ == "__main__":
    cli.run(main)
