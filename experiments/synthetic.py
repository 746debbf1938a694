r"""The paper's synthetic experiment (sparse coding + symmetric thresholded ReLUs + InfoNCE).

    python -m experiments.synthetic --config=experiments/configs/synthetic.py --workdir=runs/synthetic \
        [--config.arms=complementary_mask,none] [--config.data.d1=512 ...]

Started again with the same command in the same workdir, it resumes from the newest checkpoints
(<workdir>/<arm>/checkpoints). SIGTERM saves at the next step boundary and exits 0. Multi-host: see launch/.
"""

from cl_features import cli

main = cli.experiment_main(
    "synthetic",
    "runs/synthetic",
    "Directory for metrics, weights, summary and figures.",
    driver="cl_features.synthetic.arms",
    done=lambda workdir, _: f"wrote {workdir}/summary.json, summary.md and figures",
)

if __name__ == "__main__":
    cli.run(main)
