"""Latent-conditioned 2D diffusion UNet (MONAI) predicting x0, and its noise processes.

Two conditioning paths, chosen by the card's `network.unet.conditioning`:

"film" (default for new models; Patricio et al. 2025): the encoder latent goes through an
MLP, is concatenated with the time embedding, and every residual block turns that vector
into a per-channel scale and shift of its second group norm (h = norm(h) * (1 + s) + b).
The multiplicative path lets the latent change *how* features are used, not only add a
bias, which is what makes the reconstruction follow this subject's anatomy. The UNet also
takes a second input channel, the mask of the region that was noised (all ones for a whole
slice), so one network serves whole-slice and patched (pDDPM) reconstruction.

"add" (the first shipped model): the encoder latent is ADDED to the time
embedding. MONAI's `DiffusionModelUNet.forward` computes `emb = time_embed(t) +
class_embedding(class_labels)` when `num_class_embeds` is set (diffusion_model_unet.py,
"2. class"); we construct it with `num_class_embeds=1` and replace `class_embedding`
(an nn.Embedding) by `nn.Linear(latent_dim, time_embed_dim)`, then pass the float latent
(B, latent_dim) as `class_labels`. Unconditioned variant (ablation): `latent_dim=0`.

Middle block: MONAI's needs the optional `einops` package; the UNet is built with two
residual blocks instead (`engines.diffusion_common.ResMidBlock`), and no attention elsewhere.

Intensities: model-grid slices are in [0, 1.5]; the network sees x * 2 - 1.
Schedule: DDPM, T = 1000, MONAI's "cosine" schedule (scheduler.py `_cosine_beta`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import diffusion_model_unet as _dmu
from torch import nn

from ..diffusion_common import add_noise, alpha_bar, ddim_step  # noqa: F401 - re-exported for this engine
from ..diffusion_common import unet_without_mid_attention as _unet_without_mid_attention

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

    conditioning = "add"

    def forward(self, x: torch.Tensor, t: torch.Tensor, latent: torch.Tensor | None = None,
                noise_mask: torch.Tensor | None = None) -> torch.Tensor:
        del noise_mask  # whole-slice only
        if self.latent_dim:
            if latent is None:
                raise ValueError("this UNet is conditioned: give the encoder latent")
            return self.unet(x, timesteps=t, class_labels=latent.to(x.dtype))
        return self.unet(x, timesteps=t)


class ScaleShiftResnetBlock(_dmu.DiffusionUNetResnetBlock):
    """MONAI's residual block with the conditioning vector as scale and shift of norm2 (FiLM).

    Instances are made by re-classing MONAI's blocks (`FilmUNet`), whose `time_emb_proj`
    is replaced by a Linear to 2 x out_channels."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.nonlinearity(self.norm1(x))
        if self.upsample is not None:
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1(h)
        scale, shift = self.time_emb_proj(self.nonlinearity(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.nonlinearity(h))
        return self.skip_connection(x) + h


class FilmUNet(nn.Module):
    """(x_t, noise mask) (B,2,H,W), t (B,), latent (B,latent_dim) or None -> predicted x0 (B,1,H,W).

    MONAI's DiffusionModelUNet provides the blocks; this forward concatenates the time
    embedding with MLP(latent) and feeds the result to every block as FiLM parameters."""

    conditioning = "film"

    def __init__(self, channels=(16, 32, 64), num_res_blocks: int = 1, norm_num_groups: int = 8,
                 num_head_channels: int = 32, resblock_updown: bool = False, latent_dim: int = 128):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.unet = _unet_without_mid_attention(
            spatial_dims=2, in_channels=2, out_channels=1, channels=list(channels),
            attention_levels=[False] * len(channels), num_res_blocks=num_res_blocks,
            norm_num_groups=norm_num_groups, num_head_channels=num_head_channels,
            resblock_updown=resblock_updown)
        time_dim = channels[0] * 4
        condition_dim = time_dim * (2 if self.latent_dim else 1)
        self.latent_mlp = (nn.Sequential(nn.Linear(self.latent_dim, time_dim), nn.SiLU(),
                                         nn.Linear(time_dim, time_dim)) if self.latent_dim else None)
        for block in self.unet.modules():
            if isinstance(block, _dmu.DiffusionUNetResnetBlock):
                block.time_emb_proj = nn.Linear(condition_dim, 2 * block.out_channels)
                block.__class__ = ScaleShiftResnetBlock

    def forward(self, x: torch.Tensor, t: torch.Tensor, latent: torch.Tensor | None = None,
                noise_mask: torch.Tensor | None = None) -> torch.Tensor:
        unet = self.unet
        if noise_mask is None:
            noise_mask = torch.ones_like(x)
        emb = unet.time_embed(_dmu.get_timestep_embedding(t, unet.block_out_channels[0]).to(x.dtype))
        if self.latent_mlp is not None:
            if latent is None:
                raise ValueError("this UNet is conditioned: give the encoder latent")
            emb = torch.cat([emb, self.latent_mlp(latent.to(x.dtype))], dim=1)
        h = unet.conv_in(torch.cat([x, noise_mask.to(x.dtype)], dim=1))
        skips = [h]
        for block in unet.down_blocks:
            h, residuals = block(hidden_states=h, temb=emb, context=None)
            skips.extend(residuals)
        h = unet.middle_block(hidden_states=h, temb=emb, context=None)
        for block in unet.up_blocks:
            count = len(block.resnets)
            h = block(hidden_states=h, res_hidden_states_list=skips[-count:], temb=emb, context=None)
            skips = skips[:-count]
        return unet.out(h)


def build_unet(config: dict | None = None) -> nn.Module:
    cfg = {**DEFAULT_UNET, **(config or {})}
    if cfg.get("conditioning", "add") == "film":
        return FilmUNet(cfg["channels"], cfg["num_res_blocks"], cfg["norm_num_groups"],
                        cfg["num_head_channels"], cfg["resblock_updown"], cfg["latent_dim"])
    return ConditionalUNet(cfg["channels"], cfg["attention_levels"], cfg["num_res_blocks"],
                           cfg["norm_num_groups"], cfg["num_head_channels"], cfg["resblock_updown"],
                           cfg["latent_dim"])


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


def multiscale_noise(shape, generator: torch.Generator | None = None, device=None,
                     octaves: int = 6, persistence: float = 0.8) -> torch.Tensor:
    """Unit-variance, zero-mean coarse-to-fine noise (a simplex-like octave sum).

    Octave k (k = 0 coarsest) is Gaussian noise on a grid of H / 2**(octaves-1-k) cells,
    bilinearly upsampled with a random sub-cell shift and standardised, weighted
    persistence**k: the coarsest octave weighs most.
    With 6 octaves and persistence 0.8 on 96 px, about 85-90 % of the variance lies at
    wavelengths of 8 px and more (white noise: about 5 %), so noising hides whole lesions, not
    only their texture (AnoDDPM's simplex noise, Wyatt et al. 2022, has the same property).
    """
    b, c, h, w = shape
    total = torch.zeros(shape)
    for k in range(octaves):
        factor = 2 ** (octaves - 1 - k)
        gh, gw = max(2, -(-h // factor)), max(2, -(-w // factor))
        grid = torch.randn((b, c, gh + 1, gw + 1), generator=generator)
        if (gh, gw) != (h, w):
            grid = F.interpolate(grid, size=(h + factor, w + factor), mode="bilinear", align_corners=False)
            dy, dx = (int(v) for v in torch.randint(0, factor, (2,), generator=generator))
            grid = grid[:, :, dy:dy + h, dx:dx + w]
        else:
            grid = grid[:, :, :h, :w]
        grid = (grid - grid.mean(dim=(2, 3), keepdim=True)) / grid.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        total += persistence ** k * grid
    total = (total - total.mean(dim=(2, 3), keepdim=True)) / total.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return total.to(device)


def draw_noise(shape, generator: torch.Generator | None, device, config: dict) -> torch.Tensor:
    """Noise of the kind a card's `noise` entry names ("gaussian" or "multiscale")."""
    kind = config.get("noise", "gaussian")
    if kind == "multiscale":
        return multiscale_noise(shape, generator, device, int(config.get("noise_octaves", 6)),
                                float(config.get("noise_persistence", 0.8)))
    if kind != "gaussian":
        raise ValueError(f"unknown noise {kind!r}: use gaussian or multiscale")
    return make_noise(shape, generator, device, float(config.get("noise_coarse_weight", 0.0)))


def patch_tiles(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of tiles of `patch` px along an axis of `size` px, `stride` apart, the
    last one flush with the edge, so every pixel is covered at least once."""
    if patch >= size:
        return [0]
    starts = list(range(0, size - patch + 1, max(1, stride)))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts
