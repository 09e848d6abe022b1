"""Training and validation slices encoded once by the finished autoencoder.

Diffusion in the latent is cheap per step (24 x 24 cells), so re-encoding every batch would
dominate a denoiser stage; instead every slice is encoded once (posterior mean and sd,
standardised) and both denoiser stages draw batches from this set (the means, or draws from
the posterior with the recipe's `denoiser.sample_posterior`). The set is stored in the cohort's slice cache
(`latents/<autoencoder sha256 prefix>.pt`, keyed by the autoencoder's sha256 and the slice ids it
covers; a set that does not match is rebuilt), not beside the autoencoder: it is as large as the
cohort and made again in a few minutes, so a training-state folder never carries it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...training import slice_cache
from ...training.loop import save_atomic
from .network import LatentCodec, brain_cells
from .training import FinishedAutoencoder


@dataclass
class EncodedSlices:
    mean: torch.Tensor     # (N, C, h, w) standardised posterior means
    sd: torch.Tensor       # (N, C, h, w) posterior sd, standardised units
    cells: torch.Tensor    # (N, 1, h, w) bool latent cells inside the brain
    images: torch.Tensor | None = None  # (N, 1, H, W) the slices (kept for validation sets only)
    brains: torch.Tensor | None = None  # (N, 1, H, W) float brain masks

    def to_store(self) -> dict:
        """Half-precision latents (the sd and mean need no more); the slices as they are."""
        return {"mean": self.mean.half(), "sd": self.sd.half(), "cells": self.cells, "images": self.images,
                "brains": self.brains}

    @classmethod
    def from_store(cls, state: dict) -> EncodedSlices:
        return cls(state["mean"].float(), state["sd"].float(), state["cells"], state.get("images"), state.get("brains"))

    def __len__(self) -> int:
        return len(self.mean)

    def sample(self, index: torch.Tensor, generator: torch.Generator, posterior: bool = False) -> torch.Tensor:
        """The latents of the slices `index` (CPU): the posterior means, which is what inference
        encodes; with posterior=True a draw mean + sd * noise (an augmentation that only helps
        once the autoencoder's sd is small next to the spread of the means: measured after a
        short autoencoder run, the sd was about 3 standardised units and drowned the anatomy)."""
        if not posterior:
            return self.mean[index]
        return self.mean[index] + self.sd[index] * torch.randn(self.mean[index].shape, generator=generator)


@torch.no_grad()
def encode(codec: LatentCodec, images: torch.Tensor, brains: torch.Tensor, batch_size: int = 64,
           brain_cell_fraction: float = 0.5, keep_images: bool = True) -> EncodedSlices:
    device = next(codec.parameters()).device
    codec.eval()
    means, sds = [], []
    for start in range(0, len(images), batch_size):
        mean, sd = codec.encode(images[start:start + batch_size].to(device))
        means.append(mean.float().cpu())
        sds.append(sd.float().cpu())
    shape = (0, codec.latent_channels, images.shape[-2] // codec.downsampling, images.shape[-1] // codec.downsampling)
    mean = torch.cat(means) if means else torch.zeros(shape)
    sd = torch.cat(sds) if sds else torch.zeros(shape)
    cells = brain_cells(brains, codec.downsampling, brain_cell_fraction)
    return EncodedSlices(mean, sd, cells, images if keep_images else None, brains if keep_images else None)


def _slices(ids: list[str], config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    data = slice_cache.SliceDataset(ids, config.get("cache_dir"), float(config["min_slice_fraction"]))
    return (torch.from_numpy(data.images[:, None].copy()), torch.from_numpy(data.brains[:, None].astype("float32")))


def latents_store(autoencoder: FinishedAutoencoder, config: dict) -> Path:
    """Where the cohort's slices encoded by `autoencoder` are kept: beside the cohort's slices."""
    return Path(config.get("cache_dir") or slice_cache.default_cache_dir()) / "latents" / f"{autoencoder.sha256[:16]}.pt"


def encoded_cohort(autoencoder: FinishedAutoencoder, train_ids: list[str], val_ids: list[str], config: dict,
                   validation_slices: int = 256) -> tuple[EncodedSlices, EncodedSlices]:
    """(training set, validation subset of `validation_slices` evenly spread slices), encoded;
    read from the stored set when it was made by this autoencoder from the same slices."""
    store = latents_store(autoencoder, config)
    key = {"autoencoder_sha256": autoencoder.sha256, "train": sorted(train_ids), "validation": sorted(val_ids),
           "min_slice_fraction": float(config["min_slice_fraction"]), "validation_slices": int(validation_slices)}
    if store.is_file():
        state = torch.load(store, map_location="cpu", weights_only=True)
        if state.get("key") == key:
            return EncodedSlices.from_store(state["train"]), EncodedSlices.from_store(state["validation"])
    codec = autoencoder.codec
    images, brains = _slices(train_ids, config)
    train = encode(codec, images, brains, keep_images=False)
    val_images, val_brains = slice_cache.validation_slices(val_ids, config.get("cache_dir"), int(validation_slices),
                                                           float(config["min_slice_fraction"]))
    validation = encode(codec, val_images, val_brains)
    save_atomic({"key": key, "train": train.to_store(), "validation": validation.to_store()}, store)
    # what the store holds (half-precision latents), so a resumed run sees the same data
    return EncodedSlices.from_store(train.to_store()), EncodedSlices.from_store(validation.to_store())
