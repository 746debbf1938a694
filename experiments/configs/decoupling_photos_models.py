r"""The augmentation ablation at toy size on CPU: one tiny ResNet per augmentation set (+ a supervised one), trained
on crops of scikit-image's bundled photographs, then measured (nothing to download).

    python -m experiments.decoupling --config=experiments/configs/decoupling_photos_models.py \
        --workdir=runs/decoupling_photos_models

What it shows: for encoders trained with SimCLR (photos_simclr_tiny.py: resnet_tiny, 200 steps of batch 64 on
512 16x16 crops of the left halves of the 8 photos) under none / crop / crop_flip / crop_flip_color / simclr, and
a supervised one (photos_supervised_tiny.py, crop_flip), measured on 1024 crops of the right halves: per layer
activation density and channel cross-view correlation, dense reliance (R^2 representation -> colour histogram),
kNN and linear-probe accuracy, t-SNE maps and feature visualisations; plus the model-free table at 16 px.
Expected time: about 15 minutes on 2 CPU cores (six trainings of ~1-2 minutes, then the measurements).
launch/ablation.sh runs the same ablation through launch/ (trainings as separate image experiments).
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.image_size = 16  # the encoders' training resolution (photos_simclr_tiny)
    c.model_free.patch_size = 5
    c.models.source = "train"
    c.models.image_config = "photos_simclr_tiny"
    c.models.supervised_image_config = "photos_supervised_tiny"
    c.models.train_sets = "none,crop,crop_flip,crop_flip_color,simclr"
    c.models.supervised_set = "crop_flip"
    c.models.include_init = True
    c.measure.view_sets = "crop_flip,crop_flip_color"
    c.vis.layer = "stage3"
    c.vis.channels = 8
    return c
