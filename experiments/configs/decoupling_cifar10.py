r"""Feature decoupling on CIFAR-10 (TFDS, prepared once as array_record; see docs/images.md).

Model-free only (minutes on CPU):
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/decoupling_c10
With trained encoders (one per augmentation set, e.g. from launch/ablation.sh):
    python -m experiments.decoupling --config=experiments/configs/decoupling_cifar10.py --workdir=runs/abl/report \
        --config.models.source=checkpoints \
        --config.models.checkpoints=runs/abl/none,runs/abl/crop,runs/abl/crop_flip,runs/abl/crop_flip_color,runs/abl/simclr,supervised=runs/abl/supervised

What it shows: the model-free table of decoupling_photos.py on 5000 CIFAR-10 test images (dictionaries fitted on
5000 train images); with checkpoints, per encoder the activation density and channel cross-view correlation per
layer, dense reliance (R^2 features -> colour histogram), kNN and linear-probe accuracy, t-SNE maps and feature
visualisations of stage3 (the paper's Fig. 1-4 as numbers and pictures).
Expected time: model-free about 10-15 minutes on 2 CPU cores (stride 1); per ResNet-18 checkpoint a few minutes
on one GPU (t-SNE of 5000 points on the CPU dominates).
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.source = "tfds"
    c.data.name = "cifar10"
    c.data.fit_split = "train"
    c.data.measure_split = "test"
    c.data.image_size = 32
    c.data.num_fit_images = 5000
    c.data.num_images = 5000
    c.models.image_config = "cifar10_simclr_resnet18"
    c.measure.knn_k = 200
    c.measure.batch_size = 500
    c.tsne.perplexity = 30.0
    c.vis.layer = "stage3"
    c.vis.channels = 10
    c.vis.steps = 512
    return c
