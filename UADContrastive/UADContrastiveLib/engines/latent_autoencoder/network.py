"""LatentCodec: a small MONAI AutoencoderKL on 96 x 96 slices and the standardisation of its latent.

The encoder halves the slice size len(channels) - 1 times (3 levels: 96 -> 24). No attention
anywhere (MONAI's attention needs the optional einops package, and at 24 x 24 convolutions see
enough). Slices are in [0, 1.5] (normalised model grid); the network sees x * 2 - 1, as the
contrastive engine's UNet does.

The latent is standardised per channel (mean and sd of the posterior means over the training
brains, measured once after the autoencoder stage and kept as buffers in the state dict), so
a diffusion model on it sees unit-variance data and the noise schedule means the same thing
whatever the autoencoder's scale. The role of Rombach et al.'s 0.18215, measured here.
"""
from __future__ import annotations

import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

DEFAULT_AUTOENCODER = {
    "channels": [16, 32, 64],
    "latent_channels": 3,
    "num_res_blocks": 1,
    "norm_num_groups": 8,
}


def to_network(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def from_network(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) / 2.0


class LatentCodec(nn.Module):
    """slices (B,1,H,W) in [0, 1.5] <-> standardised latents (B, latent_channels, H/f, W/f)."""

    def __init__(self, channels=(16, 32, 64), latent_channels: int = 3, num_res_blocks: int = 1,
                 norm_num_groups: int = 8):
        super().__init__()
        channels = [int(c) for c in channels]
        if any(c % int(norm_num_groups) for c in channels):
            raise ValueError(f"every autoencoder channel count {channels} must divide by norm_num_groups "
                             f"{norm_num_groups}")
        self.autoencoder = AutoencoderKL(
            spatial_dims=2, in_channels=1, out_channels=1, channels=channels, latent_channels=int(latent_channels),
            num_res_blocks=int(num_res_blocks), attention_levels=[False] * len(channels),
            norm_num_groups=int(norm_num_groups), with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False)
        self.latent_channels = int(latent_channels)
        self.downsampling = 2 ** (len(channels) - 1)
        self.register_buffer("latent_mean", torch.zeros(self.latent_channels))
        self.register_buffer("latent_std", torch.ones(self.latent_channels))

    # ------------------------------------------------------------------ training-time (raw latent)
    def forward(self, slices: torch.Tensor):
        """(reconstruction in [0, 1.5] scale, posterior mean, posterior sd), raw latent units."""
        mu, sigma = self.autoencoder.encode(to_network(slices))
        z = self.autoencoder.sampling(mu, sigma)
        return from_network(self.autoencoder.decode(z)), mu, sigma

    # ------------------------------------------------------------------ standardised latent
    def _scale(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.latent_channels, 1, 1)
        return self.latent_mean.view(shape).to(z.dtype), self.latent_std.view(shape).to(z.dtype)

    def encode(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised posterior mean, posterior sd in standardised units)."""
        mu, sigma = self.autoencoder.encode(to_network(slices))
        mean, std = self._scale(mu)
        return (mu - mean) / std, sigma / std

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        mean, std = self._scale(latent)
        return from_network(self.autoencoder.decode(latent * std + mean))

    def set_latent_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.clamp_min(1e-4).to(self.latent_std))


def build_codec(config: dict | None = None) -> LatentCodec:
    cfg = {**DEFAULT_AUTOENCODER, **(config or {})}
    return LatentCodec(cfg["channels"], cfg["latent_channels"], cfg["num_res_blocks"], cfg["norm_num_groups"])


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over latent cells and channels, mean over the batch."""
    var = sigma.float().pow(2)
    kl = 0.5 * (mu.float().pow(2) + var - torch.log(var.clamp_min(1e-12)) - 1.0)
    return kl.flatten(1).sum(1).mean()


def brain_cells(brains: torch.Tensor, downsampling: int, min_fraction: float = 0.5) -> torch.Tensor:
    """(B,1,h,w) bool: latent cells whose downsampling x downsampling pixel block is at least
    `min_fraction` brain. Only these cells may be noised in training or changed in inference:
    the background and the brain edge stay the input's."""
    fraction = torch.nn.functional.avg_pool2d(brains.float(), downsampling, downsampling)
    return fraction >= min_fraction
