r"""Feature decoupling on CIFAR-10 (TFDS, prepared once as array_record; see docs/images.md).

Model-free only:
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/decoupling_c10
With trained encoders (one per augmentation set, e.g. from launch/ablation.sh):
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/abl/report \
        --config.models.source=checkpoints \
        --config.models.checkpoints=runs/abl/none,runs/abl/crop,runs/abl/crop_flip,runs/abl/crop_flip_color,runs/abl/simclr,supervised=runs/abl/supervised

The paper's setting in one launch command (WRN-34-5 encoders trained on TPU VMs or GPUs, then measured):
    bash launch/ablation.sh --launcher=tpu_vm --workdir=gs://BUCKET/c10_wrn \
        --image-config=experiments/configs/cifar10_simclr_wrn34x5.py \
        --supervised-config=experiments/configs/cifar10_supervised_wrn34x5.py \
        --decoupling-config=experiments/configs/decoupling_cifar10.py -- TPU_VM_OPTIONS

What it shows: the study of decoupling_cifar10_folder.py on the whole of CIFAR-10: every set of the model-free table
(the named sets and each op alone) on one positive pair per test image (10,000), 3 seeds, 95% bootstrap intervals;
dictionaries, kNN bank (k = 200) and probe from all 50,000 train images; with checkpoints, per encoder the
activation density and channel cross-view correlation per layer, dense reliance (R^2 features -> colour
histogram), kNN and linear-probe accuracy, t-SNE maps (10,000 points) and feature visualisations of stage3.
Expected time: model-free about an hour on 2 CPU cores (it grows with the measured images: 446 CPU-seconds for
the 1,017 of decoupling_cifar10_folder.py), far less on an accelerator; per WRN-34-5 checkpoint a few minutes on
one GPU, t-SNE of 10,000 points on the host CPU (about 1-2 minutes) included. tests/test_full_size.py runs the
kNN bank, probe, t-SNE and bootstrap at these sizes.
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.source = "tfds"
    c.data.name = "cifar10"
    c.data.fit_split = "train"
    c.data.measure_split = "test"
    c.data.image_size = 32
    c.data.num_fit_images = None  # all 50,000 train images
    c.data.num_images = None  # all 10,000 test images: one positive pair each
    c.model_free.sets = "none,crop,crop_flip,crop_flip_color,simclr,flip,color_jitter,grayscale,blur"
    c.model_free.seeds = 3
    c.models.image_config = "cifar10_simclr_resnet18"
    c.measure.knn_k = 200
    c.measure.batch_size = 500
    c.tsne.perplexity = 30.0
    c.vis.layer = "stage3"
    c.vis.channels = 10
    c.vis.steps = 512
    return c
