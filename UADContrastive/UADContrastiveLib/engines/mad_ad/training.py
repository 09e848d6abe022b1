"""MAD-AD's `denoiser` stage and `uadc train --engine mad_ad --config mad-ad-t1.yaml`.

One step: latents z of a batch of healthy slices (the encoded set's posterior means, or draws
with `sample_posterior`); a random patch mask (masking.random_patch_mask, brain cells only); the masked cells
noised to a random step t of the 10-step schedule, the rest left clean; the denoiser predicts
x0 and which cells were noised. Loss = MSE of x0 on the noised cells + `mask_loss_weight` x
binary cross-entropy of the mask logits on every cell. The x0 loss is taken on the noised
cells only because inference only ever takes x0 there (the released code averages over all
cells, where the clean ones teach the identity); the mask head carries the weight that
inference relies on (the released code weighs it 0.01 because its inference ignores it).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..diffusion_common import add_noise
from ..latent_autoencoder.denoiser_stage import prepare_denoiser, run_denoiser, trained_engine
from ..latent_autoencoder.trainer import train_latent_engine
from .engine import MadAdEngine
from .masking import random_patch_mask
from .network import DEFAULT_DENOISER

DESCRIPTION = ("MAD-AD (Beizaee et al. 2025): masked diffusion in the latent of a 2D KL autoencoder trained on "
               "healthy slices; cells the mask head calls noisy are restored, the map is |decode(z) - "
               "decode(restored z)|.")


def masked_batch(train_set, generator: torch.Generator, batch_size: int, scheduler, max_ratio: float,
                 posterior: bool = False):
    """(z, z_t, noised mask (B,1,h,w) bool, t) of one training batch (CPU)."""
    index = torch.randint(len(train_set), (batch_size,), generator=generator)
    z = train_set.sample(index, generator, posterior)
    mask, _ = random_patch_mask(batch_size, z.shape[-2], z.shape[-1], generator, max_ratio)
    mask = mask & train_set.cells[index]
    t = torch.randint(scheduler.num_train_timesteps, (batch_size,), generator=generator)
    noise = torch.randn(z.shape, generator=generator)
    z_t = torch.where(mask, add_noise(scheduler, z, noise, t), z)
    return z, z_t, mask, t


def mad_ad_loss(denoiser, z, z_t, mask, t, mask_loss_weight: float) -> tuple[torch.Tensor, dict]:
    x0, logits = denoiser(z_t, t)
    noised = mask.expand_as(z).float()
    x0_mse = ((x0.float() - z).pow(2) * noised).sum() / noised.sum().clamp_min(1.0)
    mask_bce = F.binary_cross_entropy_with_logits(logits.float(), mask.float())
    return x0_mse + mask_loss_weight * mask_bce, {"x0_mse": x0_mse, "mask_bce": mask_bce, "logits": logits}


@torch.no_grad()
def validate(denoiser, val_set, scheduler, max_ratio: float, device, batch_size: int = 64) -> dict:
    """x0 MSE on noised cells, mask BCE and mask accuracy on the validation latents (fixed masks)."""
    generator = torch.Generator().manual_seed(1234)
    denoiser.eval()
    mse = bce = correct = cells = 0.0
    batches = 0
    for start in range(0, len(val_set), batch_size):
        part = type(val_set)(val_set.mean[start:start + batch_size], val_set.sd[start:start + batch_size],
                             val_set.cells[start:start + batch_size])
        z, z_t, mask, t = masked_batch(part, generator, len(part), scheduler, max_ratio)
        _, figures = mad_ad_loss(denoiser, z.to(device), z_t.to(device), mask.to(device), t.to(device), 1.0)
        mse += float(figures["x0_mse"])
        bce += float(figures["mask_bce"])
        correct += float(((figures["logits"] > 0) == mask.to(device)).float().sum())
        cells += mask.numel()
        batches += 1
    return {"val_x0_mse": round(mse / max(batches, 1), 5), "val_mask_bce": round(bce / max(batches, 1), 5),
            "val_mask_accuracy": round(correct / max(cells, 1.0), 4)}


def denoiser_stage(config, autoencoder, train_set, val_set, out_dir: Path, resume, device, progress):
    setup = prepare_denoiser(config, autoencoder, MadAdEngine, DEFAULT_DENOISER,
                             1, device)
    max_ratio = float(setup.cfg.get("max_mask_ratio", 0.4))
    weight = float(setup.cfg.get("mask_loss_weight", 0.5))

    def loss() -> torch.Tensor:
        z, z_t, mask, t = masked_batch(train_set, setup.generator, setup.batch_size, setup.scheduler, max_ratio,
                                       setup.posterior)
        return mad_ad_loss(setup.denoiser, z.to(device), z_t.to(device), mask.to(device), t.to(device), weight)[0]

    def check() -> dict:
        return validate(setup.ema, val_set, setup.scheduler, max_ratio, device)

    summary = run_denoiser(setup, "mad_ad_denoiser", loss, check, config, out_dir, resume, device, progress)
    summary.update({"max_mask_ratio": max_ratio, "mask_loss_weight": weight, **check()})
    return trained_engine(setup, config, device), summary


def train(config: dict, data_root, out_dir, stage: str = "all", resume: bool = False, device: str = "auto",
          progress=None) -> dict:
    """The engine's trainer (engines.registry): stages autoencoder, denoiser or all."""
    return {"engine": MadAdEngine.name,
            **train_latent_engine(config, data_root, out_dir, stage, resume, device, progress, denoiser_stage,
                                  DESCRIPTION)}
