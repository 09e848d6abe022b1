"""Anomaly-detection methods behind one contract (`base.Engine`), one folder each:

  contrastive_diffusion/  the latent-conditioned diffusion model: networks, training, reconstruction
  zscore_atlas/           the z-score atlas baseline: fitting and reconstruction
  latent_autoencoder/     the 2D KL autoencoder the latent engines share, and their common engine/trainer
  mad_ad/                 MAD-AD: masked latent diffusion restoring the cells it finds noisy
  latent_ddpm/            latent DDPM: heals the latent cells that change most under partial noising
  diffusion_common        the diffusion UNet builder, noising and DDIM step every diffusion engine uses
  registry                engine name -> class and trainer
"""
from .base import Engine, resolve_device
from .registry import ENGINES, engine_class, load_engine

__all__ = ["ENGINES", "Engine", "engine_class", "load_engine", "resolve_device"]
