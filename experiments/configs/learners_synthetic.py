r"""Contrastive against non-contrastive learners under one augmentation (complementary masking), 3 seeds each.

    python -m experiments.sweep --config=experiments/configs/learners_synthetic.py --workdir=runs/learners

The synthetic experiment's default size (d=64, d1=256, m=256, batch 512, sigma=0.5) and optimiser (SGD lr 0.2,
weight decay 2e-3) for every learner; 4000 steps with the threshold ramped over 1000 (the default's 12000 / 2000
take about 3x longer). One panel per objective; docs/learners.md has the table and its reading.
"""

from experiments.configs import sweep_sigma


def get_config():
    c = sweep_sigma.get_config()
    c.arms = "complementary_mask"
    c.sweep.x = "data.sigma=0.5"  # one point: the default noise level
    c.sweep.objectives = "info_nce,spectral_contrastive,vicreg,simsiam,byol"
    c.train.steps, c.model.bias_ramp_steps = 4000, 1000
    c.sweep.vmap_runs = 0  # all runs of a learner side by side (as docs/learners.md was measured)
    return c
