"""A tiny randomly initialised contrastive-diffusion model folder, for fast end-to-end tests."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder
from UADContrastiveLib.engines.contrastive_diffusion.engine import ENCODER_FILE, UNET_FILE
from UADContrastiveLib.preprocess.templates import ModelGrid
from UADContrastiveLib.zoo import sha256_file

TINY_NETWORK = {
    "conditioned": True,
    "unet": {"channels": [8, 16], "attention_levels": [False, False], "num_res_blocks": 1,
             "norm_num_groups": 8, "num_head_channels": 8, "resblock_updown": False, "latent_dim": 16},
    "encoder": {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 8, 16, 16],
                "latent_dim": 16, "projection_dim": 8},
    "schedule": {"num_train_timesteps": 1000, "schedule": "cosine"},
}


def make_tiny_model(folder: Path, threshold: float = 0.3, seed: int = 0, responsive: bool = False) -> Path:
    """responsive: MONAI zero-initialises the U-Net's last convolution of every residual block and
    of the output, so a fresh network reconstructs every slice as one constant whatever the noise;
    with responsive=True those convolutions get small random weights, and the reconstruction (and
    the spread of several) depends on the input and the noise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    unet = build_unet(TINY_NETWORK["unet"]).state_dict()
    if responsive:
        for name, weight in unet.items():
            if name.endswith("conv.weight") and not weight.any():
                weight.normal_(0.0, 0.05)
    torch.save(unet, folder / UNET_FILE)
    torch.save(build_encoder(TINY_NETWORK["encoder"]).state_dict(), folder / ENCODER_FILE)
    card = {
        "name": "tiny-test", "version": "0.0.1", "engine": "contrastive_diffusion", "modality": "T1",
        "template": "ixi-head-2mm", "model_grid": ModelGrid().to_dict(), "network": TINY_NETWORK,
        "inference": {"timesteps": [250, 500, 750], "batch_size": 40, "seed": 0},
        "thresholds": {"values": {"fpr_1%": threshold, "fpr_0.5%": threshold * 1.2, "fpr_0.1%": threshold * 1.5},
                       "default": "fpr_1%", "min_size_mm3": 64.0},
        "files": {name: sha256_file(folder / name) for name in (UNET_FILE, ENCODER_FILE)},
    }
    (folder / "model.json").write_text(json.dumps(card, indent=2))
    return folder
