r"""Contrastive against non-contrastive learners under one augmentation (complementary masking), 3 seeds each.

    python -m experiments.sweep --config=experiments/configs/learners_synthetic.py --workdir=runs/learners

The synthetic experiment's default size (d=64, d1=256, m=256, batch 512, sigma=0.5), optimiser (SGD lr 0.2,
weight decay 2e-3) and length (12000 steps, threshold ramped over 2000) for every learner: 15 runs in about 12
minutes on 2 CPU cores (706 s wall measured, load 2). One panel per objective; docs/learners.md has the table
and its reading (and the shorter --config.train.steps=4000 --config.model.bias_ramp_steps=1000 comparison).
"""

from . import sweep_sigma


def get_config():
    c = sweep_sigma.get_config()
    c.arms = "complementary_mask"
    c.sweep.x = "data.sigma=0.5"  # one point: the default noise level
    c.sweep.objectives = "info_nce,spectral_contrastive,vicreg,simsiam,byol"
    c.sweep.vmap_runs = 0  # all runs of a learner side by side (as docs/learners.md was measured)
    return c
