r"""The decoupling study on a CIFAR-10 image folder on CPU: model-free tables and the representation ablation.

    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10_folder.py \
        --config.data.folder_train=DIR/train --config.data.folder_test=DIR/test --workdir=runs/decoupling_c10f

DIR: a folder of CIFAR-10 PNGs, root/<class>/*.png (e.g. a 5,085 + 1,017 image subset). Train images fit the
dictionaries, kNN bank, probes and encoders; each test image gives one positive pair per augmentation set (the
named sets and each op alone). Model-free: 3 seeds, 95% bootstrap intervals. Models: per seed of 3, the initial
encoder of cifar10_folder_simclr_tiny.py, one SimCLR encoder per set and a supervised one (crop_flip), 300 steps
each. --config.models.source=none: the model-free tables only (a few minutes). Killed and started again with the
same command, it resumes. Wall time on 2 CPU cores: docs/decoupling.md.
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.source = "folder"
    c.data.num_fit_images = None  # every image of the folders
    c.data.num_images = None
    c.model_free.sets = "none,crop,crop_flip,crop_flip_color,simclr,flip,color_jitter,grayscale,blur"
    c.model_free.seeds = 3
    c.models.source = "train"
    c.models.seeds = 3
    c.models.image_config = "cifar10_folder_simclr_tiny"
    c.models.supervised_image_config = "cifar10_folder_supervised_tiny"
    c.models.include_init = True
    c.measure.batch_size = 512
    return c
