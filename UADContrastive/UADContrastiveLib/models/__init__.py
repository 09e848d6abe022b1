"""Networks: the contrastive slice encoder and the latent-conditioned diffusion UNet."""
