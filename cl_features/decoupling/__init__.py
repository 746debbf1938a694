"""The image decoupling study (docs/decoupling.md): which augmentations decouple dense from sparse image features.

study.run(config, workdir) measures the encoders (encoders.py, config.models) with measurements.py and writes the
report folder (cl_features.report.decoupling).
"""
