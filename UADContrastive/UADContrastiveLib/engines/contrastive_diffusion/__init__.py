"""The contrastive-conditioned diffusion engine (Patricio et al. 2025):

  diffusion     the UNet (FiLM or cross-attention conditioning), noise schedule and noises
  encoder       the contrastive slice encoder and its loss
  engine        reconstruction of a volume (the Engine)
  training      `uadc train` for this engine: encoder and diffusion stages
  model_folder  writing the trained model folder and its card
"""
