"""The paper's theory experiment: sparse coding data, symmetric thresholded ReLUs, InfoNCE, four augmentations.

Command (the README's `make demo`):
    python -m experiments.synthetic --config=experiments/configs/synthetic.py --workdir=runs/synthetic
Override any field, e.g. --config.data.d1=512 --config.data.d=32 --config.data.sigma=0.3 --config.seed=1.

What it shows: with complementary masking the neurons learn the dictionary atoms (recovered_fraction 1.0, span
share 0.86, dense cross-view correlation ~0, sparse 0.55) while with no augmentation they fit the dense noise
(lower loss, no atoms recovered, dense correlation 1). Gaussian noise and independent masks recover no atom either
(dense correlation 0.5). Expected time on 2 idle CPU cores: about 4 minutes for the four arms (the README table).

Fields set to None are derived from the others (cl_features/synthetic/task.py: resolve()).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.arms = "complementary_mask,none,gaussian_noise,independent_mask"

    c.data = ml_collections.ConfigDict()
    c.data.d = 64  # number of sparse features (dictionary atoms)
    c.data.d1 = 256  # input dimension
    c.data.sparsity = ml_collections.config_dict.placeholder(float)  # P(z_j != 0); None: 3 / d
    c.data.sigma = 0.5  # std of the dense noise per coordinate
    c.data.dictionary = "orthogonal"  # or "identity" (negative control)

    c.model = ml_collections.ConfigDict()
    c.model.width = ml_collections.config_dict.placeholder(int)  # m; None: 4 * d
    c.model.init_scale = ml_collections.config_dict.placeholder(float)  # std of w init; None: 1/sqrt(d1)
    c.model.activation = "symmetric"  # or "relu"
    c.model.bias = "schedule"  # b_i = c * sigma * ||w_i|| ("learned", "none" for comparison)
    c.model.bias_c = 2.0  # c in the bias schedule
    c.model.bias_ramp_steps = 2000  # ramp c from 0 over this many steps (0: no ramp)

    c.objective = ml_collections.ConfigDict()
    # info_nce (paper form) | nt_xent | spectral_contrastive | vicreg | simsiam | byol (docs/learners.md)
    c.objective.name = "info_nce"
    c.objective.temperature = 0.5  # info_nce, nt_xent
    c.objective.predictor_layers = 1  # simsiam, byol: predictor head m -> m (1: linear; 2: Linear-BN-ReLU-Linear)
    c.objective.ema_momentum = 0.99  # byol: target <- m * target + (1 - m) * online, each step
    c.objective.vicreg_invariance = 25.0  # vicreg's weights (Bardes et al. 2022's)
    c.objective.vicreg_variance = 25.0
    c.objective.vicreg_covariance = 1.0
    # lambda in (lambda/2) ||W||_F^2; without it the gaussian_noise arm's weight norms (and loss) grow without limit
    c.objective.weight_decay = 2e-3

    c.augment = ml_collections.ConfigDict()
    c.augment.keep_prob = 0.5  # independent_mask
    c.augment.noise_std = 1.0  # gaussian_noise, in units of data.sigma

    c.train = ml_collections.ConfigDict()
    c.train.steps = 12000
    c.train.batch_size = 512
    c.train.learning_rate = 0.2
    c.train.optimizer = "sgd"  # sgd | momentum | adam | adamw | lars
    c.train.momentum = 0.9
    c.train.schedule = "cosine_tail"  # constant | warmup_cosine | cosine_tail
    c.train.decay_fraction = 0.25  # cosine_tail: decay to 0 over this last fraction of the steps
    c.train.warmup_steps = 0
    c.train.steps_per_call = 50  # steps per compiled call (lax.scan); log_every must be a multiple
    c.train.log_every = 500
    c.train.num_devices = ml_collections.config_dict.placeholder(int)  # None: all devices

    c.measure = ml_collections.ConfigDict()
    c.measure.threshold = 0.9  # |cos| for an atom to count as recovered
    c.measure.num_samples = 8192  # fresh samples for decoupling and probes (half train, half test)
    c.measure.probe_tasks = 8  # labels y = sign(<u, z>) for this many random u
    c.measure.probe_l2 = 1e-3

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000  # steps between saves (a multiple of train.steps_per_call); 0: only at the end
    c.checkpoint.max_to_keep = 2  # newest checkpoints kept (2 leaves one to fall back on)
    return c
