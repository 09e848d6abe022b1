"""MAD-AD (Beizaee et al. 2025, masked diffusion for unsupervised brain anomaly detection) on
the shared latent autoencoder:

  network   the latent denoiser: MONAI DiffusionModelUNet body, an x0 head and a noisy-cell mask head
  masking   random latent patch masks (training) and the short noise schedule
  engine    inference: find the cells the mask head calls noisy, restore only those, decode
  training  the `denoiser` stage and `uadc train --engine mad_ad`
"""
