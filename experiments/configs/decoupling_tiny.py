r"""The decoupling experiment at test size: model-free on two augmentation sets, then the tiny encoder of
photos_simclr_tiny at random init and after 10 SimCLR steps with crop_flip_color, measured on 96 shipped photo
crops at 16 px. Under a minute on CPU; used by tests/test_decoupling_images.py.

    python -m experiments.decoupling --config=experiments/configs/decoupling_tiny.py --workdir=/tmp/decoupling_tiny
"""

from . import decoupling_photos


def get_config():
    c = decoupling_photos.get_config()
    c.data.image_size = 16
    c.data.num_fit_images = 64
    c.data.num_images = 96
    c.model_free.sets = "none,crop_flip_color"
    c.model_free.patch_size = 4
    c.model_free.n_atoms = 8
    c.model_free.n_patches = 1000
    c.model_free.kmeans_iters = 5
    c.model_free.stride = 2
    c.model_free.dct_k = 3
    c.model_free.batch_size = 96
    c.models.source = "train"
    c.models.train_sets = "crop_flip_color"
    c.models.supervised_set = ""
    c.models.train_steps = 10  # past photos_simclr_tiny's 8 warmup steps
    c.models.include_init = True
    c.measure.view_sets = "crop_flip_color"  # the model-free set: one augmentation compile for both
    c.measure.batch_size = 96
    c.measure.knn_k = 5
    c.measure.probe_l2 = (1e-2,)
    c.tsne.perplexity = 10.0
    c.tsne.max_iter = 250
    c.vis.channels = 4
    c.vis.steps = 16
    return c
