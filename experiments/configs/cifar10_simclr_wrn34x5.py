r"""The paper's setting (Wen & Li 2021; docs/theory.md section 7): SimCLR on CIFAR-10 with a Wide-ResNet 34x5.

    python -m experiments.images --config=experiments/configs/cifar10_simclr_wrn34x5.py \
        --workdir=runs/cifar10_simclr_wrn34x5 --config.data.data_dir=$TFDS_DATA_DIR \
        [--config.augment.set=crop_flip]   # the weaker augmentations of the paper's Fig. 2-4

Data: as cifar10_simclr_resnet18.py. What it shows: the encoder whose features the paper inspects (WRN-34-5,
feature dim 320) under the ResNet-18 recipe; one run per augment.set gives the encoders of the decoupling study.
Expected: near or above the ResNet-18 recipe's 91% linear / 88% kNN (no run recorded here). Time: estimated 3 to
8 hours on one H200 in bfloat16 for 500 epochs.
"""

from . import cifar10_simclr_resnet18


def get_config():
    c = cifar10_simclr_resnet18.get_config()
    c.model.encoder = "wrn34x5"
    c.train.epochs = 500.0
    c.eval.every_steps = 4800  # about every 50 epochs
    return c
