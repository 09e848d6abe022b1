"""2D contrastive slice encoder (MONAI ResNet) with a projection head.

Loss: NT-Xent (SimCLR) through `monai.losses.ContrastiveLoss`. Positive pair = a healthy
slice (intensity-augmented) and an anomaly-imitating view of the same slice
(corruptions.anomaly_view); every other slice in the batch is a negative. We use NT-Xent
rather than the paper's epsilon-margin InfoNCE because it is the maintained MONAI
implementation, has one hyper-parameter (temperature) and, at our small batch sizes
(32-64 on CPU), the margin variant's benefit (relaxing the positive constraint) is not
measurable in our budget; the encoder is only used as a conditioning signal, where
invariance to the anomaly-imitating views is what matters.
"""
from __future__ import annotations

import torch
from monai.losses import ContrastiveLoss
from monai.networks.nets import ResNet
from torch import nn

DEFAULT_ENCODER = {
    "block": "basic",
    "layers": [1, 1, 1, 1],
    "block_inplanes": [16, 32, 64, 128],
    "latent_dim": 128,
    "projection_dim": 64,
}


class SliceEncoder(nn.Module):
    """(B, 1, H, W) slice -> (B, latent_dim) latent; `project` maps a latent to the loss space."""

    def __init__(self, block: str = "basic", layers=(1, 1, 1, 1), block_inplanes=(32, 64, 128, 256),
                 latent_dim: int = 128, projection_dim: int = 64):
        super().__init__()
        self.backbone = ResNet(block=block, layers=list(layers), block_inplanes=list(block_inplanes),
                               spatial_dims=2, n_input_channels=1, conv1_t_size=7, conv1_t_stride=2,
                               feed_forward=False)
        features = block_inplanes[-1] * (4 if block == "bottleneck" else 1)
        self.to_latent = nn.Linear(features, latent_dim)
        self.projection = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.ReLU(inplace=True),
                                        nn.Linear(latent_dim, projection_dim))
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.backbone(x))

    def project(self, latent: torch.Tensor) -> torch.Tensor:
        return self.projection(latent)


def build_encoder(config: dict | None = None) -> SliceEncoder:
    cfg = {**DEFAULT_ENCODER, **(config or {})}
    return SliceEncoder(cfg["block"], cfg["layers"], cfg["block_inplanes"], cfg["latent_dim"],
                        cfg["projection_dim"])


def contrastive_loss(temperature: float = 0.5) -> ContrastiveLoss:
    """NT-Xent over a batch of (view 1, view 2) projections."""
    return ContrastiveLoss(temperature=temperature)
