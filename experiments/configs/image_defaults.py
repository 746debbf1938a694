"""Every field of an image experiment (cl_features/image_training/), with SimCLR's CIFAR-10 values.

Not an experiment by itself: the named configs (cifar10_simclr_resnet18.py, ...) start from `base()` and
change what differs. Every field can be overridden on the command line, e.g.
`--config.train.batch_size=256 --config.augment.set=crop_flip --config.augment.color_jitter.strength=1.0`.
"""

import ml_collections

from cl_features.augment import image_sets

placeholder = ml_collections.config_dict.placeholder


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "simclr"  # simclr | supervised

    c.data = ml_collections.ConfigDict()
    c.data.source = "tfds"  # tfds | folder | photos (scikit-image's bundled photos, 8 classes, no download)
    c.data.name = "cifar10"  # any TFDS image dataset prepared as array_record (docs/images.md)
    c.data.data_dir = placeholder(str)  # None: $TFDS_DATA_DIR, else ~/tensorflow_datasets
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.folder_train = placeholder(str)  # source=folder: root/<class>/*.png|jpg
    c.data.folder_test = placeholder(str)
    c.data.photos_crops_per_image = 64  # source=photos: crops per photo and split
    c.data.photos_max_zoom = 4.0  # source=photos: crop sides up to this x image_size before resizing
    c.data.image_size = 32  # square size the loader stores (centre square, resized); crops come from it
    c.data.num_classes = placeholder(int)  # None: from the dataset
    c.data.mean = (0.4914, 0.4822, 0.4465)  # per-channel normalisation after augmentation; None: raw [0, 1]
    c.data.std = (0.2470, 0.2435, 0.2616)
    c.data.worker_count = 0  # grain decoding processes (0: in the main process)

    c.model = ml_collections.ConfigDict()
    c.model.encoder = "resnet18"  # cl_features.models.resnet.ENCODER_NAMES (resnet18 = CIFAR stem)
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.input_size = 32  # the encoder's input: augmentation output / eval resize
    c.model.head_hidden_dim = placeholder(int)  # None: the encoder's feature dim (SimCLR)
    c.model.head_out_dim = 128
    c.model.head_layers = 2  # Linear layers of the projection head (2: SimCLR v1, 3: v2)
    c.model.head_bn = True
    c.model.init_prng_impl = "rbg"  # PRNG of the initial weights: rbg (fast to compile) | threefry2x32

    c.objective = ml_collections.ConfigDict()
    c.objective.name = "nt_xent"  # nt_xent (SimCLR) | simsiam | byol (task=simclr only; docs/images.md)
    c.objective.temperature = 0.5  # NT-Xent tau (SimCLR CIFAR: 0.5; ImageNet: 0.1)
    c.objective.predictor_layers = 2  # simsiam, byol: predictor MLP on the projection (2: Linear-BN-ReLU-Linear)
    c.objective.predictor_hidden_dim = placeholder(int)  # None: model.head_out_dim
    c.objective.ema_momentum = 0.99  # byol: target <- m * target + (1 - m) * online after each optimiser step
    c.objective.ema_schedule = "cosine"  # byol: constant | cosine (BYOL: m_s = 1 - (1 - m)(cos(pi s / steps) + 1) / 2)
    c.objective.online_probe = True  # linear classifier on stop_gradient(features), trained jointly

    # set: none | crop | crop_flip | crop_flip_color | simclr (+ per-op overrides)
    c.augment = image_sets.config_fields("simclr")

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 512  # global batch (all devices and processes)
    c.train.epochs = 1000.0
    c.train.steps = placeholder(int)  # None: from epochs (rounded up to a multiple of steps_per_call)
    c.train.optimizer = "lars"  # lars | momentum | sgd | adam | adamw
    c.train.base_learning_rate = 1.0  # peak lr = base * batch / 256 (linear scaling)
    c.train.learning_rate_scaling = "linear"  # linear | sqrt | none
    c.train.schedule = "warmup_cosine"  # or constant (after warmup)
    c.train.warmup_epochs = 10.0
    c.train.weight_decay = 1e-6
    c.train.decay_bn_and_bias = False  # False: BN params and biases skip weight decay and LARS trust ratio
    c.train.momentum = 0.9
    c.train.steps_per_call = 10  # steps per compiled call (lax.scan); log_every must be a multiple
    c.train.log_every = 100
    c.train.unroll = placeholder(bool)  # unroll the steps of a call; None: on CPU only (faster convs there)
    c.train.num_devices = placeholder(int)  # None: all devices

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 9750  # kNN + online-probe test accuracy every N steps (0: at the end only)
    c.eval.knn_k = 200
    c.eval.knn_temperature = 0.1
    c.eval.batch_size = 1000
    c.eval.train_examples = placeholder(int)  # kNN bank / probe train set size; None: the whole train split
    c.eval.crop_fraction = 1.0  # eval centre crop (ImageNet: 0.875) before resizing to model.input_size
    c.eval.at_init = False  # also score the randomly initialised encoder (summary *_init)
    c.eval.cache = True  # keep the eval images in host memory after the first pass

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000  # steps between saves (a multiple of train.steps_per_call); 0: only at the end
    c.checkpoint.max_to_keep = 2

    c.probe = ml_collections.ConfigDict()
    c.probe.enabled = True  # offline linear probe on frozen features after training
    c.probe.method = "logistic"  # logistic (L-BFGS) | ridge (closed form)
    c.probe.l2 = (1e-6, 1e-5, 1e-4, 1e-3)  # chosen on a held-out part of the train split
    c.probe.val_fraction = 0.1
    c.probe.max_iter = 500
    return c
