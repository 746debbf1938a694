r"""Phase diagram over the noise level sigma: complementary masking against no augmentation, 3 seeds a point.

    python -m experiments.sweep --config=experiments/configs/sweep_sigma.py --workdir=runs/sweep_sigma

Every field of experiments/configs/synthetic.py applies to every run; `sweep.x` / `sweep.y` ("field=v1,v2,...")
are the heat map's columns and rows, one panel per augmentation in `arms` and objective in `sweep.objectives`.
Numeric fields that only enter arithmetic (seed, data.sigma, model.bias_c, train.learning_rate, augment.keep_prob,
...: cl_features/sweep/grid.py, TRACED) share one compiled program; other fields (shapes such as data.d1,
model.width) and the augmentation and objective compile one program per value.

The grid: the default size and the default 12000 steps (with its 2000-step threshold ramp and cosine tail), three
noise levels sigma = 0.5, 0.75, 1.0, both arms, 3 seeds: 18 runs. The default training length is kept because what
a run recovers depends on it (at a constant step the last atoms are not learned; they cross the threshold inside
the cosine tail: the README), so a shorter sweep would draw the boundary of another training, not the default's.
Its price is the grid: a default-size run-step costs about 5 ms of CPU on the development machine's 2 cores
(BENCHMARKS.md, "Sweeps as one program"), so 18 runs x 12000 steps are about 19 CPU-minutes with the final
measurements (measured: 18.4 CPU-minutes, 25 minutes of wall time with other jobs on the cores; README, "Phase
diagram"), inside 30 minutes; 5 noise levels (30 runs) would be about 31 CPU-minutes. sigma = 0.5 is the default
(every atom recovered); the masking runs diverge at 1.0 with the default learning rate (README).
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
    # Runs computed side by side (vmapped) per device; the others of a group follow in turn inside the same program.
    # 0: all. At the default size on CPU a run alone already keeps both cores busy and the batched matmuls of runs
    # side by side are slower than single ones: one at a time is as fast as runs one after another
    # (BENCHMARKS.md, "Sweeps as one program").
    c.sweep.vmap_runs = 1
    return c
