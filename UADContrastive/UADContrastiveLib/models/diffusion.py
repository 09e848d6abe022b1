"""Latent-conditioned 2D diffusion UNet (MONAI) predicting x0, and its noise processes.

Conditioning as in Patricio et al. 2025: the encoder latent is ADDED to the time
embedding. MONAI's `DiffusionModelUNet.forward` computes `emb = time_embed(t) +
class_embedding(class_labels)` when `num_class_embeds` is set (diffusion_model_unet.py,
"2. class"); we construct it with `num_class_embeds=1` and replace `class_embedding`
(an nn.Embedding) by `nn.Linear(latent_dim, time_embed_dim)`, then pass the float latent
(B, latent_dim) as `class_labels`. Unconditioned variant (ablation): `latent_dim=0`.

Middle block: MONAI's always holds a self-attention layer, which needs the optional
`einops` package (not a dependency of this project); we build the UNet with a middle
block of two residual blocks instead (`ResMidBlock`), and no attention elsewhere.

Intensities: model-grid slices are in [0, 1.5]; the network sees x * 2 - 1.
Schedule: DDPM, T = 1000, MONAI's "cosine" schedule (scheduler.py `_cosine_beta`).
"""
from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets import diffusion_model_unet as _dmu
from monai.networks.schedulers import DDPMScheduler
from torch import nn

DEFAULT_UNET = {
    "channels": [16, 32, 64],
    "attention_levels": [False, False, False],
    "num_res_blocks": 1,
    "norm_num_groups": 8,
    "num_head_channels": 32,
    "resblock_updown": False,
    "latent_dim": 128,
}
DEFAULT_SCHEDULE = {"num_train_timesteps": 1000, "schedule": "cosine"}


def to_model(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def from_model(x: torch.Tensor) -> torch.Tensor:
    return (x + 1.0) / 2.0


class ResMidBlock(nn.Module):
    """MONAI's middle block without the attention layer: two time-conditioned residual blocks."""

    def __init__(self, spatial_dims: int, in_channels: int, temb_channels: int,
                 norm_num_groups: int = 32, norm_eps: float = 1e-6, **_):
        super().__init__()
        self.resnet_1 = _dmu.DiffusionUNetResnetBlock(spatial_dims, in_channels, temb_channels, in_channels,
                                                      norm_num_groups=norm_num_groups, norm_eps=norm_eps)
        self.resnet_2 = _dmu.DiffusionUNetResnetBlock(spatial_dims, in_channels, temb_channels, in_channels,
                                                      norm_num_groups=norm_num_groups, norm_eps=norm_eps)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, context=None) -> torch.Tensor:
        del context
        return self.resnet_2(self.resnet_1(hidden_states, temb), temb)


_BUILD_LOCK = threading.Lock()


def _unet_without_mid_attention(**kwargs) -> DiffusionModelUNet:
    """DiffusionModelUNet whose middle block is ResMidBlock (see module docstring)."""
    with _BUILD_LOCK:
        original = _dmu.get_mid_block
        _dmu.get_mid_block = lambda **kw: ResMidBlock(**kw)
        try:
            return DiffusionModelUNet(**kwargs)
        finally:
            _dmu.get_mid_block = original


class ConditionalUNet(nn.Module):
    """x_t (B,1,H,W), t (B,), latent (B,latent_dim) or None -> predicted x0 (model scale)."""

    def __init__(self, channels=(16, 32, 64, 64), attention_levels=(False, False, False, False),
                 num_res_blocks: int = 1, norm_num_groups: int = 8, num_head_channels: int = 32,
                 resblock_updown: bool = False, latent_dim: int = 128):
        super().__init__()
        self.latent_dim = int(latent_dim)
        if any(attention_levels):
            raise ValueError("attention needs the optional einops package; use attention_levels all False")
        self.unet = _unet_without_mid_attention(
            spatial_dims=2, in_channels=1, out_channels=1, channels=list(channels),
            attention_levels=list(attention_levels), num_res_blocks=num_res_blocks,
            norm_num_groups=norm_num_groups, num_head_channels=num_head_channels,
            resblock_updown=resblock_updown, num_class_embeds=1 if self.latent_dim else None)
        if self.latent_dim:
            time_embed_dim = channels[0] * 4
            self.unet.class_embedding = nn.Linear(self.latent_dim, time_embed_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        if self.latent_dim:
            if latent is None:
                raise ValueError("this UNet is conditioned: give the encoder latent")
            return self.unet(x, timesteps=t, class_labels=latent.to(x.dtype))
        return self.unet(x, timesteps=t)


def build_unet(config: dict | None = None) -> ConditionalUNet:
    cfg = {**DEFAULT_UNET, **(config or {})}
    return ConditionalUNet(cfg["channels"], cfg["attention_levels"], cfg["num_res_blocks"],
                           cfg["norm_num_groups"], cfg["num_head_channels"], cfg["resblock_updown"],
                           cfg["latent_dim"])


def build_scheduler(config: dict | None = None) -> DDPMScheduler:
    cfg = {**DEFAULT_SCHEDULE, **(config or {})}
    return DDPMScheduler(num_train_timesteps=cfg["num_train_timesteps"], schedule=cfg["schedule"],
                         prediction_type="sample")


def make_noise(shape, generator: torch.Generator | None = None, device=None,
               coarse_weight: float = 0.0, coarse_size: int = 12) -> torch.Tensor:
    """Unit-variance noise: Gaussian, optionally mixed with low-frequency noise.

    coarse_weight w in [0, 1]: noise = sqrt(1-w) * white + sqrt(w) * coarse, where coarse
    is Gaussian noise on a (coarse_size x coarse_size) grid, upsampled bilinearly and
    re-standardised (a cheap simplex-like noise that hides larger structures).
    """
    white = torch.randn(shape, generator=generator).to(device)
    if coarse_weight <= 0:
        return white
    b, c, h, w = shape
    low = torch.randn((b, c, coarse_size, coarse_size), generator=generator).to(device)
    low = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    low = (low - low.mean(dim=(2, 3), keepdim=True)) / low.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (1 - coarse_weight) ** 0.5 * white + coarse_weight ** 0.5 * low


def alpha_bar(scheduler: DDPMScheduler, t: torch.Tensor) -> torch.Tensor:
    return scheduler.alphas_cumprod.to(t.device)[t].float()


def add_noise(scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = alpha_bar(scheduler, t).view(-1, 1, 1, 1).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddim_step(scheduler: DDPMScheduler, x_t: torch.Tensor, x0_pred: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) step from t to t_prev (t_prev < 0 means x0)."""
    if t_prev < 0:
        return x0_pred
    a_t = float(scheduler.alphas_cumprod[t])
    a_prev = float(scheduler.alphas_cumprod[t_prev])
    eps = (x_t - a_t ** 0.5 * x0_pred) / max(1 - a_t, 1e-8) ** 0.5
    return a_prev ** 0.5 * x0_pred + (1 - a_prev) ** 0.5 * eps
