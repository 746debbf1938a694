r"""The supervised counterpart of cifar10_folder_simclr_tiny.py: same encoder, images and schedule, cross-entropy.

    python -m experiments.images --config=experiments/configs/cifar10_folder_supervised_tiny.py \
        --workdir=runs/c10f_sup --config.data.folder_train=DIR/train --config.data.folder_test=DIR/test
"""

from . import cifar10_folder_simclr_tiny


def get_config():
    c = cifar10_folder_simclr_tiny.get_config()
    c.task = "supervised"
    c.objective.online_probe = False
    c.augment.set = "crop_flip"
    return c
