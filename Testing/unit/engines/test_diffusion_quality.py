"""The diffusion engine's noise, patch tiling and conditioning path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from UADContrastiveLib.engines.contrastive_diffusion.diffusion import (
    build_unet,
    multiscale_noise,
    patch_tiles,
)
from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder
from UADContrastiveLib.engines.contrastive_diffusion.engine import tile_masks
from UADContrastiveLib.engines.contrastive_diffusion.stages import (
    DiffusionModule,
    random_patch_masks,
)

TINY_FILM = {"channels": [8, 16, 16], "attention_levels": [False] * 3, "num_res_blocks": 1,
             "norm_num_groups": 4, "num_head_channels": 8, "resblock_updown": False,
             "latent_dim": 8, "conditioning": "film"}
TINY_ENCODER = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [4, 8, 8, 8],
                "latent_dim": 8, "projection_dim": 4}


def coarse_share(noise: torch.Tensor, wavelength_px: float = 8.0) -> float:
    """Share of the noise power at wavelengths >= wavelength_px (radial frequency <= 1/wavelength)."""
    power = torch.fft.rfft2(noise[:, 0].double()).abs() ** 2
    fy = torch.fft.fftfreq(noise.shape[-2])[:, None]
    fx = torch.fft.rfftfreq(noise.shape[-1])[None, :]
    coarse = (fy ** 2 + fx ** 2).sqrt() <= 1.0 / wavelength_px
    return float(power[:, coarse].sum() / power.sum())


def test_multiscale_noise_is_unit_variance_and_mostly_coarse():
    noise = multiscale_noise((32, 1, 96, 96), torch.Generator().manual_seed(0))
    white = torch.randn((32, 1, 96, 96), generator=torch.Generator().manual_seed(0))
    assert noise.shape == (32, 1, 96, 96)
    assert abs(float(noise.std()) - 1.0) < 0.01 and abs(float(noise.mean())) < 0.01
    # measured: 0.89 for 6 octaves / persistence 0.8, about 0.05 for white noise
    assert 0.8 < coarse_share(noise) < 0.95
    assert coarse_share(white) < 0.08
    # fewer octaves reach less far down in frequency: the share at >= 8 px falls
    assert coarse_share(multiscale_noise((32, 1, 96, 96), torch.Generator().manual_seed(0), octaves=3)) < 0.6


def test_multiscale_noise_is_seeded():
    a = multiscale_noise((2, 1, 40, 56), torch.Generator().manual_seed(5))
    b = multiscale_noise((2, 1, 40, 56), torch.Generator().manual_seed(5))
    c = multiscale_noise((2, 1, 40, 56), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("size", "patch", "stride", "expected"), [
    (96, 48, 48, [0, 48]), (96, 48, 32, [0, 32, 48]), (96, 48, 24, [0, 24, 48]), (50, 48, 48, [0, 2]),
    (40, 48, 24, [0])])
def test_patch_tiles_reach_both_edges(size, patch, stride, expected):
    assert patch_tiles(size, patch, stride) == expected


def test_tile_masks_cover_every_brain_pixel_and_skip_empty_tiles():
    brain = np.zeros((96, 96), bool)
    brain[20:70, 30:90] = True
    brain[5, 5] = True  # an isolated brain pixel in the corner tile
    masks = tile_masks(brain, 48, 24)
    coverage = np.sum(masks, axis=0)
    assert (coverage[brain] >= 1).all()
    # no kept tile is empty of brain, and the 3 x 3 grid holds 9 tiles of which all touch brain here
    assert all((m.astype(bool) & brain).any() for m in masks)
    only_top_left = np.zeros((96, 96), bool)
    only_top_left[2:10, 2:10] = True
    assert len(tile_masks(only_top_left, 48, 24)) == 1


def test_random_patch_masks_noise_a_square_or_the_whole_slice():
    masks = random_patch_masks((64, 1, 96, 96), torch.Generator().manual_seed(0), 0.5, 48)
    areas = masks.sum((1, 2, 3))
    assert set(areas.unique().tolist()) == {48.0 * 48.0, 96.0 * 96.0}
    assert 16 < int((areas < 96 * 96).sum()) < 48
    assert torch.equal(random_patch_masks((4, 1, 8, 8), torch.Generator(), 0.0, 4), torch.ones(4, 1, 8, 8))


def test_film_conditioning_carries_gradient_into_the_encoder():
    torch.manual_seed(0)
    unet, encoder = build_unet(TINY_FILM), build_encoder(TINY_ENCODER)
    module = DiffusionModule(unet, encoder)
    x = torch.rand(4, 1, 32, 32)
    # MONAI zero-initialises each block's last convolution: give it weights, as training would
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    out = module(x, torch.full((4,), 500), x, torch.ones_like(x))
    out.abs().mean().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    # and the latent changes the output multiplicatively (FiLM), not only by a bias
    with torch.no_grad():
        a = unet(x, torch.full((4,), 500), torch.zeros(4, 8))
        b = unet(x, torch.full((4,), 500), torch.ones(4, 8))
    assert float((a - b).abs().mean()) > 1e-4


def test_unconditioned_film_unet_needs_no_latent_and_conditioned_refuses_none():
    plain = build_unet({**TINY_FILM, "latent_dim": 0})
    assert plain(torch.rand(2, 1, 32, 32), torch.tensor([10, 900])).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="latent"):
        build_unet(TINY_FILM)(torch.rand(2, 1, 32, 32), torch.tensor([10, 900]))
