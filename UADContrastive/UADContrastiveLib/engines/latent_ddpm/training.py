"""The latent DDPM's `denoiser` stage and `uadc train --engine latent_ddpm --config latent-ddpm-t1.yaml`.

One step: latents z of a batch of healthy slices (the encoded set's posterior means, or draws
with `sample_posterior`),
t uniform in [0, T), z_t = q(z_t | z), loss = MSE between the predicted and the true x0 over
every cell (the whole latent is noised, as in a plain DDPM). When the budget is spent, the
engine's `change_threshold` is set to the `change_quantile` of the per-cell change on the
healthy validation latents (brain cells), so that share of healthy cells is left untouched.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..diffusion_common import add_noise
from ..latent_autoencoder.denoiser_stage import prepare_denoiser, run_denoiser, trained_engine
from ..latent_autoencoder.trainer import train_latent_engine
from .engine import LatentDdpmEngine
from .network import DEFAULT_DENOISER

DESCRIPTION = ("Latent DDPM (Pinaya et al. 2022): a DDPM in the latent of a 2D KL autoencoder trained on healthy "
               "slices; the latent cells that change most under partial noising and denoising are healed and "
               "decoded, the map is |input - healed| inside the healed cells.")


def noised_batch(train_set, generator: torch.Generator, batch_size: int, scheduler, posterior: bool = False):
    """(z, z_t, t) of one training batch (CPU)."""
    index = torch.randint(len(train_set), (batch_size,), generator=generator)
    z = train_set.sample(index, generator, posterior)
    t = torch.randint(scheduler.num_train_timesteps, (batch_size,), generator=generator)
    noise = torch.randn(z.shape, generator=generator)
    return z, add_noise(scheduler, z, noise, t), t


@torch.no_grad()
def validate(denoiser, val_set, scheduler, device, batch_size: int = 64) -> dict:
    """x0 MSE on the validation latents at fixed random steps."""
    generator = torch.Generator().manual_seed(1234)
    denoiser.eval()
    total = batches = 0.0
    for start in range(0, len(val_set), batch_size):
        z = val_set.mean[start:start + batch_size]
        t = torch.randint(scheduler.num_train_timesteps, (len(z),), generator=generator)
        z_t = add_noise(scheduler, z, torch.randn(z.shape, generator=generator), t)
        total += float((denoiser(z_t.to(device), t.to(device)).float() - z.to(device)).pow(2).mean())
        batches += 1
    return {"val_x0_mse": round(total / max(batches, 1), 5)}


@torch.no_grad()
def healthy_change_threshold(engine: LatentDdpmEngine, val_set, quantile: float, batch_size: int = 64) -> float:
    """The `quantile` of the per-cell change |z - denoised z| over the brain cells of healthy latents."""
    generator = torch.Generator().manual_seed(int(engine.inference.get("seed", 0)))
    changes = []
    for start in range(0, len(val_set), batch_size):
        z = val_set.mean[start:start + batch_size].to(engine.device)
        change, _ = engine.change_map(z, generator)
        changes.append(change[val_set.cells[start:start + batch_size].to(engine.device)].float().cpu())
    values = torch.cat(changes) if changes else torch.zeros(0)
    if len(values) == 0:
        raise ValueError("no healthy validation latents to set the change threshold on")
    return float(torch.quantile(values[:1_000_000], quantile))


def denoiser_stage(config, autoencoder, train_set, val_set, out_dir: Path, resume, device, progress):
    setup = prepare_denoiser(config, autoencoder, LatentDdpmEngine, DEFAULT_DENOISER,
                             2, device)

    def loss() -> torch.Tensor:
        z, z_t, t = noised_batch(train_set, setup.generator, setup.batch_size, setup.scheduler, setup.posterior)
        return (setup.denoiser(z_t.to(device), t.to(device)).float() - z.to(device)).pow(2).mean()

    def check() -> dict:
        return validate(setup.ema, val_set, setup.scheduler, device)

    summary = run_denoiser(setup, "latent_ddpm_denoiser", loss, check, config, out_dir, resume, device, progress)
    engine = trained_engine(setup, config, device)
    quantile = float(engine.inference["change_quantile"])
    engine.inference["change_threshold"] = round(healthy_change_threshold(engine, val_set, quantile), 5)
    summary.update({**check(), "change_threshold": {
        "value": engine.inference["change_threshold"], "quantile": quantile,
        "rule": "quantile of |z - denoised z| over brain cells of healthy validation latents"}})
    return engine, summary


def train(config: dict, data_root, out_dir, stage: str = "all", resume: bool = False, device: str = "auto",
          progress=None) -> dict:
    """The engine's trainer (engines.registry): stages autoencoder, denoiser or all."""
    return {"engine": LatentDdpmEngine.name,
            **train_latent_engine(config, data_root, out_dir, stage, resume, device, progress, denoiser_stage,
                                  DESCRIPTION)}
