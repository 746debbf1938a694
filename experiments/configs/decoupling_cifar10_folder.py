r"""The decoupling study on a CIFAR-10 image folder on CPU: model-free tables and the representation ablation.

    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10_folder.py \
        --config.data.folder_train=DIR/train --config.data.folder_test=DIR/test --workdir=runs/decoupling_c10f

DIR: a folder of CIFAR-10 PNGs, root/<class>/*.png (e.g. a 5,085 + 1,017 image subset). Every train image fits the
patch dictionaries, the kNN bank, the probes and the encoders; every test image gives one positive pair per
augmentation set (the named sets and each op alone) and is where kNN, probe, reliance, density and t-SNE are
measured. Model-free: 3 seeds (views and dictionaries redrawn), 95% bootstrap intervals over the test images.
Models (models.source=train): per seed of 3, the initial encoder of cifar10_folder_simclr_tiny.py, one SimCLR
encoder per augmentation set and a supervised one (crop_flip), 300 steps of batch 128 each (kNN well above the
initial encoder's; docs/decoupling.md). --config.models.source=none: the model-free tables only (a few minutes).
Killed and started again with the same command, it resumes: finished encoders are restored, not retrained.
Wall time on 2 CPU cores: docs/decoupling.md.
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.source = "folder"
    c.data.image_size = 32
    c.data.num_fit_images = None  # every image of the folders
    c.data.num_images = None
    c.model_free.sets = "none,crop,crop_flip,crop_flip_color,simclr,flip,color_jitter,grayscale,blur"
    c.model_free.seeds = 3
    c.model_free.resamples = 1000
    c.model_free.batch_size = 512
    c.models.source = "train"
    c.models.seeds = 3
    c.models.image_config = "cifar10_folder_simclr_tiny"
    c.models.supervised_image_config = "cifar10_folder_supervised_tiny"
    c.models.train_sets = "none,crop,crop_flip,crop_flip_color,simclr"
    c.models.supervised_set = "crop_flip"
    c.models.include_init = True
    c.measure.view_sets = "crop_flip,simclr"
    c.measure.knn_k = 20
    c.measure.batch_size = 512
    c.vis.layer = "stage3"
    c.vis.channels = 8
    return c
