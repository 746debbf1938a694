"""cl_features: feature learning in contrastive learning (Wen & Li, ICML 2021), in JAX."""

__version__ = "0.1.0"
