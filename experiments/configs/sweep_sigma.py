r"""Phase diagram over the noise level sigma: complementary masking against no augmentation, 3 seeds a point.

    python -m experiments.sweep --config=experiments/configs/sweep_sigma.py --workdir=runs/sweep_sigma

Every field of experiments/configs/synthetic.py applies to every run; `sweep.x` / `sweep.y` ("field=v1,v2,...")
are the heat map's columns and rows, one panel per augmentation in `arms` and objective in `sweep.objectives`.
Numeric fields that only enter arithmetic (cl_features/sweep/grid.py, TRACED) share one compiled program; shapes,
augmentations and objectives compile one program per value.

Why this grid: the default size and the default 12000 steps, because what a run recovers depends on the training
length (the last atoms cross the threshold inside the cosine tail: the README); 3 noise levels x 2 arms x 3
seeds = 18 runs fit in 30 minutes (measured: 18.4 CPU-minutes, 25 minutes of wall time on 2 shared CPU cores).
sigma = 0.5 is the default (every atom recovered); the masking runs diverge at 1.0 (README, "Phase diagram").
"""

import ml_collections

from . import synthetic


def get_config():
    c = synthetic.get_config()
    c.arms = "complementary_mask,none"
    c.sweep = ml_collections.ConfigDict()
    c.sweep.seeds = 3  # seeds seed, seed + 1, ... at every point
    c.sweep.x = "data.sigma=0.5,0.75,1.0"
    c.sweep.y = ""  # a second swept field ("field=v1,v2,..."), or "" for one row
    c.sweep.objectives = ""  # objective.name values, one panel each ("": the config's objective.name)
    c.sweep.vmap_runs = 1  # runs side by side per device, the rest in turn (0: all); fastest on CPU (BENCHMARKS.md)
    return c
