r"""SimCLR on ImageNet: ResNet-50, batch 4096, LARS, tau 0.1, full SimCLR augmentations, multi-host.

    # every host of the job (see launch/README.md), e.g. a v4-64 TPU slice or 4 x 8 H100:
    launch/tpu_vm.sh --name my-v4-64 --zone us-central2-b images -- \
        --config=experiments/configs/imagenet_simclr_resnet50.py --workdir=gs://BUCKET/runs/imagenet_simclr \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets

Data: the manual ImageNet download in <data_dir>/downloads/manual, then `tfds build imagenet2012
--data_dir=$TFDS_DATA_DIR --file_format=array_record` once (docs/images.md).
What it shows: the package at the SimCLR paper's scale: global-batch NT-Xent and BatchNorm, LARS (lr 4.8),
colour strength 1.0 and blur on 224x224 crops, head 2048-2048-128, bfloat16; kNN and the offline probe on a
100k-image subset of train. Expected: SimCLR reports about 64-65% top-1 linear accuracy after 100 epochs (no run
recorded here). Time: estimated 12 to 24 hours on 8 H100s.
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.name = "imagenet2012"
    c.data.test_split = "validation"
    c.data.image_size = 256
    c.data.mean, c.data.std = None, None  # SimCLR feeds [0, 1] pixels
    c.data.worker_count = 16
    c.model.encoder = "resnet50_imagenet"
    c.model.dtype = "bfloat16"
    c.model.input_size = 224
    c.model.head_hidden_dim = 2048
    c.objective.temperature = 0.1
    c.augment.color_jitter.strength = 1.0
    c.train.batch_size = 4096
    c.train.epochs = 100.0
    c.train.base_learning_rate = 0.3
    c.eval.every_steps = 3100  # about every 10 epochs (312 steps per epoch)
    c.eval.batch_size = 1024
    c.eval.train_examples = 100_000
    c.eval.crop_fraction = 0.875
    c.probe.l2 = (1e-5, 1e-4, 1e-3)
    return c
