r"""SimCLR at toy size on CPU, on crops of the photographs shipped with scikit-image (nothing to download).

    python -m experiments.images --config=experiments/configs/photos_simclr_tiny.py --workdir=runs/photos_simclr

What it shows: contrastive training of a small ResNet (widths 8-16-32-64) on 512 crops of the left halves of 8
photos (8 classes; test crops from the right halves) raises kNN and linear-probe accuracy above the same encoder
at random init (printed as *_init); only the probes see labels.
Expected (measured, 2 shared CPU cores, about 35 s): kNN accuracy 0.41 at init -> 0.72, linear probe
0.57 -> 0.75, online probe 0.75 (chance 0.125). tests/test_train_images.py runs a 60-step version of it.
"""

from . import image_defaults


def get_config():
    c = image_defaults.base()
    c.data.source = "photos"
    c.data.image_size = 16
    c.data.mean, c.data.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    c.model.encoder = "resnet_tiny"
    c.model.input_size = 16
    c.model.head_out_dim = 32
    c.objective.temperature = 0.2
    c.augment.set = "crop_flip"
    c.augment.crop.scale = (0.2, 1.0)
    c.train.batch_size = 64
    c.train.steps = 200
    c.train.optimizer = "momentum"
    c.train.base_learning_rate = 0.4
    c.train.warmup_epochs = 1.0
    c.train.weight_decay = 5e-4
    c.train.steps_per_call = 1  # on CPU the steps of a call are unrolled: 1 keeps the compile short
    c.train.log_every = 50
    c.eval.every_steps = 100
    c.eval.knn_k = 20
    c.eval.batch_size = 256
    c.eval.at_init = True
    c.probe.l2 = (1e-3, 1e-2)
    c.probe.max_iter = 200
    return c
