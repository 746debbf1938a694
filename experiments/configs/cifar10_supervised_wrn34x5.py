r"""Supervised baseline of the paper's encoder: WRN-34-5 on CIFAR-10 with cross-entropy and crop + flip.

    python -m experiments.images --config=experiments/configs/cifar10_supervised_wrn34x5.py \
        --workdir=runs/cifar10_supervised_wrn34x5 --config.data.data_dir=$TFDS_DATA_DIR

Data: `tfds build cifar10 --data_dir=$TFDS_DATA_DIR --file_format=array_record` once (docs/images.md).
What it shows: the supervised encoder the paper's Fig. 1 compares with the contrastive one (same backbone,
labels instead of NT-Xent, the weak augmentation supervised learning is happy with). Standard recipe: SGD with
momentum 0.9, lr 0.1 per 128 images (base 0.2 per 256), weight decay 5e-4 on kernels,
200 epochs, 1 warmup epoch then cosine. The crop is a random resized crop with scale (0.35, 1), not the usual
4-pixel pad-and-crop, so expect slightly less than the ~95-96% test accuracy of WRN-34 with pad-and-crop.
Expected: test_acc about 94-95%; kNN a few points lower (no run recorded in the repository). Time: estimated
30 to 90 minutes on one H200 in bfloat16.
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.task = "supervised"
    c.data.name = "cifar10"
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
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.eval.every_steps = 7800  # about every 20 epochs (390 steps per epoch)
    return c
