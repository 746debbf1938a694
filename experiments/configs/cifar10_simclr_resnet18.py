r"""SimCLR's CIFAR-10 recipe: ResNet-18 (CIFAR stem), batch 512, 1000 epochs, LARS, tau 0.5, colour strength 0.5.

    python -m experiments.images --config=experiments/configs/cifar10_simclr_resnet18.py \
        --workdir=runs/cifar10_simclr_resnet18 --config.data.data_dir=$TFDS_DATA_DIR

Data: `tfds build cifar10 --data_dir=$TFDS_DATA_DIR --file_format=array_record` once (docs/images.md).
What it shows: the reference point of the image pipeline, with google-research/simclr's CIFAR-10 settings
(image_defaults' values; no blur on 32x32 images). Expected: about 91% linear-probe and 88% kNN accuracy
(published; no run recorded here). Time: an estimate of 1 to 3 hours on one H200 in bfloat16; the loader needs
data.worker_count processes to keep up.
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.worker_count = 8
    c.model.dtype = "bfloat16"
    c.augment.set = "crop_flip_color"  # SimCLR turns blur off for CIFAR
    c.augment.color_jitter.strength = 0.5
    c.eval.every_steps = 9700  # about every 100 epochs (97 steps per epoch)
    return c
