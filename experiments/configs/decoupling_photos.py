r"""Model-free feature decoupling on real photographs shipped with scikit-image (nothing to download).

    python -m experiments.decoupling --config=experiments/configs/decoupling_photos.py --workdir=runs/decoupling_photos

What it shows: per named augmentation set, the cross-view correlation over 1024 positive pairs (32x32 crops of
the right halves of 8 photographs) of dense image statistics (mean colour, colour histogram, low-frequency
energy) and of sparse ones (pooled thresholded responses of a 64-atom whitened 6x6 patch dictionary, on colour
and on luminance patches). Colour distortion should cut the colour statistics' correlation far more than the
luminance dictionary's; crop alone should not decouple (docs/decoupling.md has the table).
Expected time: about 3 minutes on 2 CPU cores. No model is trained (models.source = 'none').
"""

import ml_collections

placeholder = ml_collections.config_dict.placeholder


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "photos"  # photos (scikit-image's bundled photographs, 8 classes) | tfds | folder
    c.data.name = "cifar10"  # source=tfds: any TFDS image dataset prepared as array_record
    c.data.data_dir = placeholder(str)  # source=tfds: None -> $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.folder_train = placeholder(str)  # source=folder: root/<class>/*.png|jpg, the split called "train"
    c.data.folder_test = placeholder(str)  # source=folder: the split called "test"
    c.data.fit_split = "train"  # dictionaries, kNN bank, probe and encoder training images
    c.data.measure_split = "test"  # the measured images (positive pairs, t-SNE, density, kNN / probe test)
    c.data.image_size = 32
    c.data.num_fit_images = ml_collections.FieldReference(512, int)  # None: the whole split
    c.data.num_images = ml_collections.FieldReference(1024, int)  # None: the whole split; one positive pair per image
    c.data.photos_max_zoom = 4.0  # source=photos: crop sides up to this x image_size before resizing

    c.model_free = ml_collections.ConfigDict()
    c.model_free.enabled = True
    c.model_free.seeds = 1  # seeds seed, seed + 1, ...: views and dictionaries redrawn, the same images
    c.model_free.resamples = 1000  # bootstrap resamples of the measured images (95% intervals); 0: none
    c.model_free.sets = "none,crop,crop_flip,crop_flip_color,simclr"
    c.model_free.color_strength = 0.5  # colour-jitter strength of the sets (SimCLR: 0.5 CIFAR, 1.0 ImageNet)
    c.model_free.dictionaries = "rgb,luminance"
    c.model_free.patch_size = 6
    c.model_free.n_atoms = 64
    c.model_free.n_patches = 20000
    c.model_free.kmeans_iters = 30
    c.model_free.zca_eps = 0.1
    c.model_free.threshold = 1.0  # soft threshold of the patch codes (whitened units)
    c.model_free.stride = 1  # patch grid of the codes (2: 4x faster, slightly less shift-invariant)
    c.model_free.bins = 8  # colour histogram bins per channel
    c.model_free.dct_k = 4  # low-frequency energy: k x k DCT coefficients
    c.model_free.batch_size = 512  # images per augmentation call

    c.models = ml_collections.ConfigDict()
    c.models.source = "none"  # none | init | checkpoints | train
    c.models.checkpoints = ""  # source=checkpoints: comma list of image-experiment workdirs (or name=workdir)
    c.models.checkpoint_subdir = "checkpoints"  # source=checkpoints: orbax checkpoints inside each workdir
    c.models.image_config = "photos_simclr_tiny"  # source=init|train: a config in experiments/configs/
    c.models.train_sets = "none,crop,crop_flip,crop_flip_color,simclr"  # source=train: one SimCLR encoder each
    c.models.supervised_set = "crop_flip"  # source=train: also a supervised encoder with this set ('' for none)
    c.models.supervised_image_config = "photos_supervised_tiny"  # source=train: config of the supervised run
    c.models.train_steps = placeholder(int)  # source=train: override train.steps of image_config
    c.models.include_init = False  # also measure the randomly initialised encoder of image_config
    c.models.seeds = 1  # initial and trained encoders: one per seed seed, seed + 1, ...

    c.measure = ml_collections.ConfigDict()
    c.measure.view_sets = "crop_flip,simclr"  # positive pairs for the per-channel cross-view correlation
    c.measure.batch_size = 256
    c.measure.threshold = 0.0  # a unit fires when its activation > threshold
    c.measure.dense_unit = 0.9  # a channel is 'dense' when it fires on >= this fraction of (image, position)
    c.measure.ridge_l2 = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # reliance R^2: penalty chosen on training rows
    c.measure.knn_k = 20
    c.measure.knn_temperature = 0.1
    c.measure.probe = True  # linear probe (logistic, l2 chosen on a held-out part of the fit images)
    c.measure.probe_l2 = (1e-4, 1e-3, 1e-2)

    c.tsne = ml_collections.ConfigDict()
    c.tsne.enabled = True
    c.tsne.perplexity = 30.0
    c.tsne.max_iter = 1000

    c.vis = ml_collections.ConfigDict()
    c.vis.enabled = True
    c.vis.layer = "stage3"
    c.vis.channels = 8  # the first N channels of the layer
    c.vis.steps = 256
    c.vis.learning_rate = 0.05
    c.vis.jitter = 2
    c.vis.blur_every = 4
    c.vis.blur_sigma = 0.5
    c.vis.decorrelate = True
    c.vis.init_std = 0.2  # start: grey + this much pixel noise (too faint a start leaves some channels off)
    return c
