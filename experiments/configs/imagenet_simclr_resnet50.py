r"""SimCLR on ImageNet: ResNet-50, batch 4096, LARS, tau 0.1, full SimCLR augmentations, multi-host.

    # every host of the job (see launch/README.md), e.g. a v4-64 TPU slice or 4 x 8 H100:
    launch/tpu_vm.sh --name my-v4-64 --zone us-central2-b images -- \
        --config=experiments/configs/imagenet_simclr_resnet50.py --workdir=gs://BUCKET/runs/imagenet_simclr \
        --config.data.data_dir=gs://BUCKET/tensorflow_datasets

Data: ImageNet needs the manual download (ILSVRC2012_img_train.tar and _val.tar in <data_dir>/downloads/manual),
then `tfds build imagenet2012 --data_dir=$TFDS_DATA_DIR --file_format=array_record` once (docs/images.md);
every host reads its own shard of the shuffled stream.
What it shows: the package at the scale of the SimCLR paper: global-batch NT-Xent (every example of the 4096
a negative), BatchNorm over the global batch, LARS with lr 0.3 x 4096 / 256 = 4.8, weight decay 1e-6 on kernels,
10 warmup epochs, colour strength 1.0 and blur on 224x224 crops (of 256x256 centre squares stored by the loader),
projection head 2048-2048-128, bfloat16. kNN over a 100k-image subset of train every 10 epochs; the offline probe
is a logistic regression on frozen features of that subset (SimCLR's own linear eval trains 90 epochs with
augmentation on all of train, which gives a few points more).
Expected: SimCLR reports about 64-65% top-1 linear accuracy after 100 epochs at batch 4096 (69.3% after 1000).
No run of this config is recorded in the repository. Time: the SimCLR paper's 100 epochs took about 1.5 hours
on a 128-core TPU v3; estimate 12 to 24 hours on 8 H100s.
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
    c.augment.set = "simclr"
    c.augment.color_jitter.strength = 1.0
    c.train.batch_size = 4096
    c.train.epochs = 100.0
    c.train.optimizer = "lars"
    c.train.base_learning_rate = 0.3
    c.train.learning_rate_scaling = "linear"
    c.train.warmup_epochs = 10.0
    c.train.weight_decay = 1e-6
    c.train.steps_per_call = 10
    c.train.log_every = 100
    c.eval.every_steps = 3100  # about every 10 epochs (312 steps per epoch)
    c.eval.batch_size = 1024
    c.eval.train_examples = 100_000
    c.eval.crop_fraction = 0.875
    c.probe.l2 = (1e-5, 1e-4, 1e-3)
    return c
