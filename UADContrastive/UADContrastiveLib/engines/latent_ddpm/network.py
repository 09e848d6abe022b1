"""The latent DDPM: MONAI DiffusionModelUNet on the standardised latent, x0 prediction.

Schedule: T = 1000, scaled-linear betas 0.0015..0.0195 (the latent-diffusion schedule Pinaya et
al. use for their latent DDPM).
Prediction: x0 ("sample") rather than the paper's epsilon. Inference starts from an
intermediate step (t ~ 300) and takes few DDIM steps; with x0 prediction the first step
already gives the healed latent directly, the estimate does not amplify the network's error
by 1 / sqrt(alpha_bar) as recovering x0 from an epsilon prediction does, and the training
loss weighs every step like the MAD-AD and contrastive engines (which also predict x0).
"""
from __future__ import annotations

from ..diffusion_common import unet_without_mid_attention

DEFAULT_DENOISER = {
    "channels": [32, 64, 64],
    "num_res_blocks": 1,
    "norm_num_groups": 16,
}
DEFAULT_SCHEDULE = {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0015,
                    "beta_end": 0.0195}


def build_denoiser(latent_channels: int, config: dict | None = None):
    cfg = {**DEFAULT_DENOISER, **(config or {})}
    channels = [int(c) for c in cfg["channels"]]
    return unet_without_mid_attention(
        spatial_dims=2, in_channels=int(latent_channels), out_channels=int(latent_channels), channels=channels,
        attention_levels=[False] * len(channels), num_res_blocks=int(cfg["num_res_blocks"]),
        norm_num_groups=int(cfg["norm_num_groups"]), num_head_channels=channels[-1])
