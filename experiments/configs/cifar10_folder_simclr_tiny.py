r"""SimCLR at CPU size on a CIFAR-10 image folder (e.g. a 5,085-image subset): the encoders of the decoupling study.

    python -m experiments.images --config=experiments/configs/cifar10_folder_simclr_tiny.py --workdir=runs/c10f_simclr \
        --config.data.folder_train=DIR/train --config.data.folder_test=DIR/test

What it is: resnet_tiny on 32x32 images augmented to 16x16 views (four times cheaper convs on CPU), batch 128,
300 steps of SGD-momentum, NT-Xent at tau 0.2, the simclr set with crops of 20-100% of the image and a blur
kernel of 0.2 x the view side. decoupling_cifar10_folder.py trains one per augmentation set and seed (and says
how long).
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.source = "folder"
    c.model.encoder = "resnet_tiny"
    c.model.input_size = 16
    c.model.head_out_dim = 64
    c.objective.temperature = 0.2
    c.augment.crop.scale = (0.2, 1.0)
    c.augment.blur.kernel_frac = 0.2
    c.train.batch_size = 128
    c.train.steps = 300
    c.train.optimizer = "momentum"
    c.train.base_learning_rate = 0.4
    c.train.warmup_epochs = 0.5
    c.train.weight_decay = 5e-4
    c.train.steps_per_call = 1  # on CPU the steps of a call are unrolled: 1 keeps the compile short
    c.train.log_every = 50
    c.checkpoint.every = 50
    c.eval.every_steps = 0
    c.eval.knn_k = 20
    c.eval.batch_size = 512
    c.probe.l2 = (1e-3, 1e-2)
    c.probe.max_iter = 200
    return c
