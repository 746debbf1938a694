"""The image decoupling study: which augmentations decouple dense from sparse image features (docs/decoupling.md).

measurements.py  config.data / model_free / measure / tsne / vis: the images, model-free tables, per-encoder
                 density, cross-view correlation, reliance, kNN and probe, t-SNE and feature visualisations
encoders.py      config.models: initial, trained here (resumable) or restored from image-experiment workdirs
study.py         validate(config), run(config, workdir) -> the report folder (cl_features.report.decoupling)
"""
