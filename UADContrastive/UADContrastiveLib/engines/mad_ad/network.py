"""The MAD-AD latent denoiser: x_t (B,C,h,w), t -> (x0 prediction (B,C,h,w), noisy-cell logits (B,1,h,w)).

MONAI's DiffusionModelUNet is the body; its output block is replaced by two heads on the
last feature map (norm, SiLU, 3x3 conv, as MONAI's own output block): one predicts the clean
latent x0, the other, per latent cell, whether the cell was noised. The second head is what
lets inference find the anomalous cells by itself (an anomaly looks like noise to a model
that has only seen healthy latents). The heads' last convolutions start at zero, so an
untrained network predicts x0 = 0 and p(noisy) = 1/2 (the authors' released network zeroes
its output layers too).
"""
from __future__ import annotations

import torch
from torch import nn

from ..diffusion_common import unet_without_mid_attention

DEFAULT_DENOISER = {
    "channels": [32, 64, 64],
    "num_res_blocks": 1,
    "norm_num_groups": 16,
}


def _head(channels: int, groups: int, out_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(channels, out_channels, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(nn.GroupNorm(groups, channels, eps=1e-6), nn.SiLU(), conv)


class MaskedDenoiser(nn.Module):
    def __init__(self, latent_channels: int, channels=(32, 64, 64), num_res_blocks: int = 1,
                 norm_num_groups: int = 16):
        super().__init__()
        channels = [int(c) for c in channels]
        self.latent_channels = int(latent_channels)
        self.body = unet_without_mid_attention(
            spatial_dims=2, in_channels=self.latent_channels, out_channels=self.latent_channels, channels=channels,
            attention_levels=[False] * len(channels), num_res_blocks=int(num_res_blocks),
            norm_num_groups=int(norm_num_groups), num_head_channels=channels[-1])
        self.body.out = nn.Identity()  # the UNet now returns its last feature map; the heads follow
        self.x0_head = _head(channels[0], int(norm_num_groups), self.latent_channels)
        self.mask_head = _head(channels[0], int(norm_num_groups), 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x_t, timesteps=t)
        return self.x0_head(features), self.mask_head(features)


def build_denoiser(latent_channels: int, config: dict | None = None) -> MaskedDenoiser:
    cfg = {**DEFAULT_DENOISER, **(config or {})}
    return MaskedDenoiser(latent_channels, cfg["channels"], cfg["num_res_blocks"], cfg["norm_num_groups"])
