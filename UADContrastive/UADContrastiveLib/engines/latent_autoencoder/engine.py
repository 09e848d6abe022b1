"""LatentEngine: what the latent engines (MAD-AD, latent DDPM) share behind the Engine contract.

A model folder holds `autoencoder.pt` (the shared LatentCodec) and `denoiser.pt` (the
engine's latent network); the card's `network` names both configurations. Reconstruction
runs slice by slice over the slices holding brain: each engine's `heal_slices` turns a batch
of slices into healthy slices (same scale); voxels outside the brain are always the input's,
so `residual = input - healthy` (the base contract) is zero there and everything downstream
(filtering, residual statistics, calibration, evaluation) is the same as for any engine.
Noise comes from a seeded CPU torch.Generator: a reconstruction is reproducible.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..base import Engine, ReconstructionProgress, inference_autocast, load_weights
from ..diffusion_common import build_scheduler
from .network import LatentCodec, brain_cells, build_codec

AUTOENCODER_FILE = "autoencoder.pt"
DENOISER_FILE = "denoiser.pt"


class LatentEngine(Engine):
    """Shared loading and slice loop; subclasses define the denoiser and `heal_slices`."""

    default_inference: dict = {}
    # (latent_channels, card network.denoiser) -> the latent network
    denoiser_factory: Callable[[int, dict | None], nn.Module]
    default_schedule: dict  # what a card's network.schedule leaves out (diffusion_common.build_scheduler)

    def __init__(self, codec: LatentCodec, denoiser: nn.Module, network: dict, inference: dict | None = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.codec = codec.to(self.device).eval()
        self.denoiser = denoiser.to(self.device).eval()
        self.network = network
        self.inference = {**self.default_inference, **(inference or {})}
        self.scheduler = build_scheduler(network.get("schedule"), self.default_schedule)

    @classmethod
    def build_denoiser(cls, network: dict) -> nn.Module:
        """The engine's latent network from the card's `network` entry."""
        return cls.denoiser_factory(int(network["autoencoder"]["latent_channels"]), network.get("denoiser"))

    @classmethod
    def from_folder(cls, model_dir: Path, card, device) -> LatentEngine:
        network = card.network
        codec = build_codec(network.get("autoencoder"))
        load_weights(codec, Path(model_dir) / AUTOENCODER_FILE, device)
        denoiser = cls.build_denoiser(network)
        load_weights(denoiser, Path(model_dir) / DENOISER_FILE, device)
        if torch.device(device).type == "cpu":
            # channels-last convolutions are faster on the CPU (see the contrastive engine)
            codec.to(memory_format=torch.channels_last)
            denoiser.to(memory_format=torch.channels_last)
        return cls(codec, denoiser, network, card.inference, device)

    def cells(self, brains: torch.Tensor) -> torch.Tensor:
        """(B,1,h,w) bool latent cells inside the brain: the only cells an engine may change."""
        return brain_cells(brains, self.codec.downsampling, float(self.inference.get("brain_cell_fraction", 0.5)))

    @abstractmethod
    def heal_slices(self, slices: torch.Tensor, brains: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,1,H,W) slices in [0, 1.5] and their brain masks (float 0/1) on self.device ->
        healthy slices of the same shape and scale."""

    @torch.inference_mode()
    def reconstruct(self, volume: np.ndarray, brain: np.ndarray, progress: ReconstructionProgress = None) -> np.ndarray:
        volume = np.asarray(volume, dtype=np.float32)
        brain = np.asarray(brain, dtype=bool)
        if volume.ndim != 3 or volume.shape != brain.shape:
            raise ValueError(f"volume {volume.shape} and brain {brain.shape} must be the same (Z, Y, X) shape")
        factor = self.codec.downsampling
        if volume.shape[1] % factor or volume.shape[2] % factor:
            raise ValueError(f"slices of {volume.shape[1:]} voxels do not divide by the autoencoder's "
                             f"downsampling factor {factor}")
        healthy = volume.copy()
        indices = np.flatnonzero(brain.reshape(len(brain), -1).any(1))
        batch_size = max(1, int(self.inference.get("batch_size", 32)))
        generator = torch.Generator().manual_seed(int(self.inference.get("seed", 0)))
        for start in range(0, len(indices), batch_size):
            pick = indices[start:start + batch_size]
            slices = torch.from_numpy(volume[pick][:, None].copy()).to(self.device)
            brains = torch.from_numpy(brain[pick][:, None].astype(np.float32)).to(self.device)
            with inference_autocast(self.device):
                result = self.heal_slices(slices, brains, generator).float()
            result = torch.where(brains > 0, result, slices)[:, 0].cpu().numpy()
            healthy[pick] = result
            if progress:
                progress(min(1.0, (start + len(pick)) / len(indices)))
        if progress:
            progress(1.0)
        return healthy
