"""Diffusion pieces every diffusion engine shares: the noise schedule (MONAI's DDPMScheduler,
built by one function from a card's `network.schedule`), MONAI's DiffusionModelUNet without
its attention middle block, and the closed-form noising and deterministic DDIM step on the
scheduler's `alphas_cumprod`.

Middle block: MONAI's always holds a self-attention layer, which needs the optional
`einops` package (not a dependency of this project); `unet_without_mid_attention` builds
the UNet with a middle block of two residual blocks instead (`ResMidBlock`).

The noising and DDIM helpers work on any step t of the scheduler's training grid, so an
engine can start denoising from an intermediate step (partial noising, as anomaly detection
does) without MONAI's fixed inference grid.
"""
from __future__ import annotations

import threading

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets import diffusion_model_unet as _dmu
from monai.networks.schedulers import DDPMScheduler
from torch import nn

SCHEDULE_FIELDS = ("num_train_timesteps", "schedule")  # the rest of a schedule entry: its own arguments


def build_scheduler(schedule: dict | None, defaults: dict) -> DDPMScheduler:
    """The noise schedule of every diffusion engine: MONAI's DDPMScheduler predicting x0
    ("sample"), from `schedule` (a card's or recipe's `network.schedule`) over the engine's
    `defaults`: num_train_timesteps, schedule (MONAI's name: cosine, linear_beta,
    scaled_linear_beta...) and that schedule's own arguments (beta_start and beta_end for the
    beta schedules, none for cosine)."""
    entry = {**defaults, **(schedule or {})}
    arguments = {name: float(value) for name, value in entry.items() if name not in SCHEDULE_FIELDS}
    return DDPMScheduler(num_train_timesteps=int(entry["num_train_timesteps"]), schedule=str(entry["schedule"]),
                         prediction_type="sample", **arguments)


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


def unet_without_mid_attention(**kwargs) -> DiffusionModelUNet:
    """DiffusionModelUNet(**kwargs) whose middle block is ResMidBlock (see the module docstring)."""
    with _BUILD_LOCK:  # the factory is swapped module-wide for the duration of one construction
        original = _dmu.get_mid_block
        _dmu.get_mid_block = lambda **kw: ResMidBlock(**kw)
        try:
            return DiffusionModelUNet(**kwargs)
        finally:
            _dmu.get_mid_block = original


def alpha_bar(scheduler, t: torch.Tensor) -> torch.Tensor:
    return scheduler.alphas_cumprod.to(t.device)[t].float()


def add_noise(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0) for a batch of steps t: sqrt(a_t) x0 + sqrt(1 - a_t) noise."""
    a = alpha_bar(scheduler, t).view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddim_step(scheduler, x_t: torch.Tensor, x0_pred: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) step from t to t_prev (t_prev < 0 means x0)."""
    if t_prev < 0:
        return x0_pred
    a_t = float(scheduler.alphas_cumprod[t])
    a_prev = float(scheduler.alphas_cumprod[t_prev])
    eps = (x_t - a_t ** 0.5 * x0_pred) / max(1 - a_t, 1e-8) ** 0.5
    return a_prev ** 0.5 * x0_pred + (1 - a_prev) ** 0.5 * eps


def step_schedule(t_start: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_prev) pairs of `steps` evenly spaced DDIM steps from t_start down to x0 (t_prev -1)."""
    if t_start < 0 or steps < 1:
        raise ValueError(f"need t_start >= 0 and steps >= 1, not {t_start}, {steps}")
    points = sorted({int(round(v)) for v in torch.linspace(t_start, 0, min(steps, t_start + 1)).tolist()},
                    reverse=True)
    return list(zip(points, points[1:] + [-1]))
