"""SimCLR and supervised training of image encoders, with a kNN monitor and a linear probe (docs/images.md).

inputs.py     config.data: the train and test splits (TFDS, an image folder, the shipped photographs)
network.py    config.model / objective / augment: encoder + heads, augmentation on device, NT-Xent or CE loss
recipe.py     config.train: steps, warmup and peak learning rate, the optimiser (weight decay on kernels only)
evaluator.py  config.eval / probe: frozen features, kNN and online-probe accuracy, offline linear probe
trainer.py    validate(config), train (resumable, via cl_features.train.resumable), run, restore
"""
