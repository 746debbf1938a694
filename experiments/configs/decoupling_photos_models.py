r"""The augmentation ablation at toy size on CPU: one tiny ResNet per augmentation set (+ a supervised one), trained
on crops of scikit-image's bundled photographs, then measured (nothing to download).

    python -m experiments.decoupling --config=experiments/configs/decoupling_photos_models.py \
        --workdir=runs/decoupling_photos_models

What it shows: for SimCLR encoders (photos_simclr_tiny.py) under none / crop / crop_flip / crop_flip_color /
simclr and a supervised one (photos_supervised_tiny.py), measured on 1024 crops of the right halves: per layer
activation density and channel cross-view correlation, dense reliance, kNN and linear-probe accuracy, t-SNE maps
and feature visualisations; plus the model-free table at 16 px. Expected time: about 15 minutes on 2 CPU cores.
launch/ablation.sh runs the same ablation through launch/.
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.image_size = 16  # the encoders' training resolution (photos_simclr_tiny)
    c.model_free.patch_size = 5
    c.models.source = "train"
    c.models.include_init = True
    c.measure.view_sets = "crop_flip,crop_flip_color"
    return c
