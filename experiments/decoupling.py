r"""Feature decoupling on real images: model-free statistics, trained representations, and the paper's pictures.

    python -m experiments.decoupling --config=experiments/configs/decoupling_photos.py --workdir=runs/decoupling_photos
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/decoupling_c10 \
        --config.models.source=checkpoints --config.models.checkpoints=runs/abl/crop,runs/abl/simclr

One report folder (cl_features/report/decoupling.py): tables (markdown + JSON), figures (PNG), summary.md.
Encoders trained here (models.source=train) live in <workdir>/models/<name>: started again, it resumes them.
"""

from cl_features import cli

main = cli.experiment_main(
    "decoupling_photos",
    "runs/decoupling",
    "Report folder: tables, figures, summary.md.",
    driver="cl_features.decoupling.study",
    done=lambda workdir, out: f"wrote {workdir}/summary.md ({out['seconds']} s)",
)

if __name__ == "__main__":
    cli.run(main)
