"""Anomaly-detection methods behind one contract (`base.Engine`), one folder each:

  contrastive_diffusion/  the latent-conditioned diffusion model: networks, training, reconstruction
  zscore_atlas/           the z-score atlas baseline: fitting and reconstruction
  registry                engine name -> class and trainer
"""
from .base import Engine, resolve_device
from .registry import ENGINES, engine_class, load_engine

__all__ = ["ENGINES", "Engine", "engine_class", "load_engine", "resolve_device"]
