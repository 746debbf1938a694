r"""Phase diagram over the noise level sigma: complementary masking against no augmentation, 3 seeds a point.

    python -m experiments.sweep --config=experiments/configs/sweep_sigma.py --workdir=runs/sweep_sigma

Every field of experiments/configs/synthetic.py applies to every run; `sweep.x` / `sweep.y` ("field=v1,v2,...")
are the heat map's columns and rows, one panel per augmentation in `arms` and objective in `sweep.objectives`.
Numeric fields that only enter arithmetic (seed, data.sigma, model.bias_c, train.learning_rate, augment.keep_prob,
...: cl_features/sweep/grid.py, TRACED) share one compiled program; other fields (shapes such as data.d1,
model.width) and the augmentation and objective compile one program per value.
"""

import ml_collections

from . import synthetic


def get_config():
    c = synthetic.get_config()
    c.arms = "complementary_mask,none"
    c.sweep = ml_collections.ConfigDict()
    c.sweep.seeds = 3  # seeds seed, seed + 1, ... at every point
    c.sweep.x = "data.sigma=0.1,0.25,0.5,0.75,1.0"
    c.sweep.y = ""  # a second swept field ("field=v1,v2,..."), or "" for one row
    c.sweep.objectives = ""  # objective.name values, one panel each ("": the config's objective.name)
    # Runs computed side by side (vmapped) per device; the others of a group follow in turn inside the same program.
    # 0: all. At the default size on CPU the step is compute bound and a batched matmul is slower than single ones.
    c.sweep.vmap_runs = 0
    return c
