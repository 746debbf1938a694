r"""SimCLR's CIFAR-10 recipe: ResNet-18 (CIFAR stem), batch 512, 1000 epochs, LARS, tau 0.5, colour strength 0.5.

    python -m experiments.images --config=experiments/configs/cifar10_simclr_resnet18.py \
        --workdir=runs/cifar10_simclr_resnet18 --config.data.data_dir=$TFDS_DATA_DIR

Data: `tfds build cifar10 --data_dir=$TFDS_DATA_DIR --file_format=array_record` once (docs/images.md).
What it shows: the reference point for the package's image pipeline. The settings are those of
google-research/simclr for CIFAR-10 (learning_rate 1.0 x batch / 256 = 2.0 with LARS, weight decay 1e-6 on
kernels only, 10 warmup epochs then cosine, projection head 512-512-128, crop + flip + colour jitter 0.5 +
grayscale, no blur on 32x32 images).
Expected: published results for this recipe are about 91% linear-probe accuracy and about 88% kNN accuracy
(k = 200, T = 0.1); the online probe ends a little below the offline one. No run of this config is recorded in the
repository. Time: an estimate of 1 to 3 hours on one H200 in bfloat16 (~3.4 GFLOP per training
image, 50M training images; see BENCHMARKS.md for the measured step cost on CPU); the loader needs
data.worker_count processes to keep up (grain decodes ~2-3k CIFAR records/s per process).
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.name = "cifar10"
    c.data.worker_count = 8
    c.model.encoder = "resnet18"
    c.model.dtype = "bfloat16"
    c.objective.temperature = 0.5
    c.augment.set = "crop_flip_color"  # SimCLR turns blur off for CIFAR
    c.augment.color_jitter.strength = 0.5
    c.train.batch_size = 512
    c.train.epochs = 1000.0
    c.train.optimizer = "lars"
    c.train.base_learning_rate = 1.0
    c.train.learning_rate_scaling = "linear"
    c.train.warmup_epochs = 10.0
    c.train.weight_decay = 1e-6
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.eval.every_steps = 9700  # about every 100 epochs (97 steps per epoch)
    return c
