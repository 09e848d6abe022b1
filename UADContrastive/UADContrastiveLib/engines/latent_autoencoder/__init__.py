"""The 2D KL autoencoder shared by the latent engines (MAD-AD, latent DDPM):

  network     LatentCodec: MONAI AutoencoderKL + the latent's per-channel standardisation
  training    the `autoencoder` stage (L1 + small KL on healthy slices) and its reuse
  latents     the training and validation slices encoded once, shared by the denoiser stages
  engine      LatentEngine: volume -> slices -> latent healing -> healthy volume (the contract)
  folder      the model folder of a latent engine (weights + card)
  trainer     `uadc train` for a latent engine: autoencoder stage, then the engine's denoiser stage
  denoiser_stage  what the engines' denoiser stages share: network + EMA, the budgeted run, the engine
Trained once, one autoencoder serves both engines: it trains in a training-state folder of its own
that both denoiser recipes name (`autoencoder_state`; the 0.1 recipes: the same `autoencoder_path`).
"""
