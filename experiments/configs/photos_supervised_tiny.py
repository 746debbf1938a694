r"""Supervised baseline at toy size on CPU: the photos of photos_simclr_tiny.py, cross-entropy, same encoder.

    python -m experiments.images --config=experiments/configs/photos_supervised_tiny.py --workdir=runs/photos_sup

What it shows: the supervised counterpart of photos_simclr_tiny.py on the same 8-class crops (crop_flip
augmentation, SGD-momentum): test accuracy of the trained classifier (`test_acc`), kNN and linear-probe accuracy
of its features, to set beside the contrastive ones. Expected (measured, 2 shared CPU cores, about 35 s):
test_acc 0.77, kNN 0.76, linear probe 0.78 (the SimCLR config: kNN 0.72, probe 0.75).
"""

from . import photos_simclr_tiny


def get_config():
    c = photos_simclr_tiny.get_config()
    c.task = "supervised"
    c.objective.online_probe = False
    c.augment.set = "crop_flip"
    c.train.base_learning_rate = 0.4
    return c
