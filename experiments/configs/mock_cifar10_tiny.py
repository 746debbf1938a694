r"""The whole TFDS path at toy size: cifar10 read through tfds.data_source and grain, SimCLR, kNN, linear probe.

    python -m experiments.images --config=experiments/configs/mock_cifar10_tiny.py --workdir=runs/mock \
        --config.data.data_dir=$TFDS_DATA_DIR

What it shows: that a prepared cifar10 (docs/images.md) is read and trained end to end: 8 steps of a tiny ResNet
on 16x16 images, a kNN bank of 48 train images. The tests run it on `tfds.testing.mock_data` (about 15 s on
CPU; random labels, so its accuracies mean nothing); on the real cifar10 expect near chance within a minute or
two on CPU (not run here).
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.image_size = 16
    c.model.encoder = "resnet_tiny"
    c.model.input_size = 16
    c.model.head_out_dim = 16
    c.augment.set = "crop_flip_color"
    c.train.batch_size = 16
    c.train.steps = 8
    c.train.steps_per_call = 1
    c.train.log_every = 4
    c.train.base_learning_rate = 0.5
    c.train.warmup_epochs = 0.0
    c.eval.every_steps = 4
    c.eval.knn_k = 10
    c.eval.batch_size = 16
    c.eval.train_examples = 48
    c.probe.l2 = (1e-3,)
    c.probe.max_iter = 50
    return c
