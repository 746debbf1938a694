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

What it shows: the study of decoupling_cifar10_folder.py on the whole of CIFAR-10 (one positive pair per test
image, 3 seeds, 95% bootstrap intervals; dictionaries, kNN bank (k = 200) and probe from all 50,000 train images;
t-SNE of 10,000 points). Expected time: model-free about an hour on 2 CPU cores, far less on an accelerator; a
few minutes per WRN-34-5 checkpoint on one GPU. tests/test_full_size.py runs the kNN bank, probe, t-SNE and
bootstrap at these sizes.
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.source = "tfds"
    c.data.num_fit_images = None  # all 50,000 train images
    c.data.num_images = None  # all 10,000 test images: one positive pair each
    c.model_free.sets = "none,crop,crop_flip,crop_flip_color,simclr,flip,color_jitter,grayscale,blur"
    c.model_free.seeds = 3
    c.models.image_config = "cifar10_simclr_resnet18"
    c.measure.knn_k = 200
    c.measure.batch_size = 500
    c.vis.channels = 10
    c.vis.steps = 512
    return c
