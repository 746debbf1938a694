"""Child of tests/test_train_images.py: the same tiny SimCLR run on 1 and on 2 forced CPU devices, as JSON."""

import json

from cl_features.image_training import trainer
from experiments.configs import photos_simclr_tiny

out = {}
for n in (1, 2):
    c = photos_simclr_tiny.get_config()
    c.data.photos_crops_per_image = 8  # 64 train / 64 test crops
    c.train.batch_size, c.train.steps, c.train.log_every, c.train.warmup_epochs = 16, 2, 2, 0.0
    c.eval.every_steps, c.eval.batch_size, c.eval.at_init, c.probe.enabled = 0, 16, False, False
    c.train.num_devices = n
    s = trainer.run(c, None, verbose=False)
    out[n] = {k: s[k] for k in ("final_loss", "knn_acc", "online_probe_acc")}
print(json.dumps(out))
