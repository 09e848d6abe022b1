"""Latent DDPM (Pinaya et al. 2022, fast unsupervised brain anomaly detection and segmentation with
diffusion models) on the shared latent autoencoder:

  network   the latent DDPM: MONAI DiffusionModelUNet + DDPMScheduler predicting x0
  engine    inference: partial noising and DDIM denoising, mark the cells that changed most,
            heal only those (inpainting pass), decode
  training  the `denoiser` stage and `uadc train --engine latent_ddpm`
"""
