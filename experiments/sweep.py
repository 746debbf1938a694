r"""A sweep of the synthetic experiment as one compiled program per group of runs, and its phase diagrams.

    python -m experiments.sweep --config=experiments/configs/sweep_sigma.py --workdir=runs/sweep_sigma \
        [--config.sweep.x=data.sigma=0.25,0.5] [--config.sweep.y=model.bias_c=1,2,3] [--config.sweep.seeds=5]

Writes <workdir>/sweep.json (every run's config values and results), phase_diagram.png and sweep.md. Started again
with the same command in the same workdir, it resumes: finished groups are read back, the others restart from
their newest checkpoint (<workdir>/groups/<group>/checkpoints). SIGTERM saves at the next step boundary and exits 0.
"""

from cl_features import cli

main = cli.experiment_main(
    "sweep_sigma",
    "runs/sweep",
    "Directory for the groups' checkpoints, sweep.json and the phase diagrams.",
    driver="cl_features.sweep.run",
    done=lambda workdir, out: (
        f"{len(out['runs'])} runs in {out['seconds']:.0f} s: wrote {workdir}/sweep.json, sweep.md and phase_diagram.png"
    ),
)

if __name__ == "__main__":
    cli.run(main)
