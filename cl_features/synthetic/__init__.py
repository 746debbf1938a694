"""The paper's synthetic experiment: sparse coding data x = Mz + xi, symmetric thresholded ReLUs, InfoNCE.

task.py     the config's derived fields and rules; dictionary, network, per-step sampling, loss and the step
results.py  the final measurements of one trained arm (recovery, decoupling, probes)
arms.py     validate(config), train_arm (resumable, via cl_features.train.resumable), run(config, workdir)
"""
