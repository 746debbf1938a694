r"""Supervised baseline at toy size on CPU: the photos of photos_simclr_tiny.py, cross-entropy, same encoder.

    python -m experiments.images --config=experiments/configs/photos_supervised_tiny.py --workdir=runs/photos_sup

What it shows: test accuracy (`test_acc`), kNN and linear-probe accuracy of a classifier trained on the same
8-class crops (crop_flip), beside the contrastive ones. Expected (measured, 2 shared CPU cores, about 35 s):
test_acc 0.77, kNN 0.76, linear probe 0.78 (the SimCLR config: kNN 0.72, probe 0.75).
"""

from . import photos_simclr_tiny


def get_config():
    c = photos_simclr_tiny.get_config()
    c.task = "supervised"
    c.objective.online_probe = False
    return c
