r"""Supervised baseline of the paper's encoder: WRN-34-5 on CIFAR-10 with cross-entropy and crop + flip.

    python -m experiments.images --config=experiments/configs/cifar10_supervised_wrn34x5.py \
        --workdir=runs/cifar10_supervised_wrn34x5 --config.data.data_dir=$TFDS_DATA_DIR

Data: as cifar10_simclr_resnet18.py. What it shows: the supervised encoder the paper's Fig. 1 compares with the
contrastive one (SGD-momentum, base lr 0.2 per 256, weight decay 5e-4, 200 epochs; a random resized crop of
scale (0.35, 1), not pad-and-crop). Expected: test_acc about 94-95%, kNN a few points lower (no run recorded
here). Time: estimated 30 to 90 minutes on one H200 in bfloat16.
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.task = "supervised"
    c.data.worker_count = 8
    c.model.encoder = "wrn34x5"
    c.model.dtype = "bfloat16"
    c.objective.online_probe = False
    c.augment.set = "crop_flip"
    c.augment.crop.scale = (0.35, 1.0)
    c.train.batch_size = 128
    c.train.epochs = 200.0
    c.train.optimizer = "momentum"
    c.train.base_learning_rate = 0.2
    c.train.warmup_epochs = 1.0
    c.train.weight_decay = 5e-4
    c.eval.every_steps = 7800  # about every 20 epochs (390 steps per epoch)
    return c
