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

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from ...training.loop import checkpoint_path
from ...training.stage_runner import StageSpec, run_stage
from ..diffusion_common import add_noise
from ..latent_autoencoder.trainer import train_latent_engine
from .engine import DEFAULT_INFERENCE, MadAdEngine
from .masking import DEFAULT_SCHEDULE, build_scheduler, random_patch_mask
from .network import DEFAULT_DENOISER, build_denoiser

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


def denoiser_stage(config, codec, autoencoder_network, train_set, val_set, out_dir: Path, resume, device, progress):
    cfg = config["denoiser"]
    network = {"autoencoder": autoencoder_network, "denoiser": {**DEFAULT_DENOISER, **cfg.get("network", {})},
               "schedule": {**DEFAULT_SCHEDULE, **cfg.get("schedule", {})}}
    seed = int(config.get("seed", 0)) + 1
    torch.manual_seed(seed)
    denoiser = build_denoiser(codec.latent_channels, network["denoiser"]).to(device)
    ema = copy.deepcopy(denoiser).eval().requires_grad_(False)
    scheduler = build_scheduler(network["schedule"])
    generator = torch.Generator().manual_seed(seed)
    batch_size, max_ratio = int(cfg["batch_size"]), float(cfg.get("max_mask_ratio", 0.4))
    weight = float(cfg.get("mask_loss_weight", 0.5))
    posterior = bool(cfg.get("sample_posterior", False))

    def loss() -> torch.Tensor:
        z, z_t, mask, t = masked_batch(train_set, generator, batch_size, scheduler, max_ratio, posterior)
        return mad_ad_loss(denoiser, z.to(device), z_t.to(device), mask.to(device), t.to(device), weight)[0]

    spec = StageSpec(
        name="mad_ad_denoiser", model=denoiser, generator=generator, loss=loss, ema=ema,
        ema_decay=float(cfg.get("ema", 0.995)),
        optimizer=torch.optim.AdamW(denoiser.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0))),
        lr=float(cfg["lr"]), minutes=cfg.get("minutes"), max_steps=cfg.get("max_steps"),
        warmup_steps=int(cfg.get("warmup_steps", 50)),
        validate=lambda: validate(ema, val_set, scheduler, max_ratio, device),
        validate_every_minutes=float(cfg.get("validate_every_minutes", 10)))
    result = run_stage(spec, checkpoint_path(config, out_dir, "mad_ad_denoiser"), device, resume,
                       float(config.get("checkpoint_minutes", 5)), progress)
    # only this engine's settings: the shared defaults file also holds the contrastive engine's
    inference = {**DEFAULT_INFERENCE, **{k: v for k, v in (config.get("inference") or {}).items() if k in DEFAULT_INFERENCE}}
    engine = MadAdEngine(codec, ema, network, inference, device)
    summary = {**{k: result[k] for k in ("steps", "minutes", "seconds_per_step", "final_loss", "history")},
               "batch_size": batch_size, "max_mask_ratio": max_ratio, "mask_loss_weight": weight,
               **validate(ema, val_set, scheduler, max_ratio, device)}
    return engine, summary


def train(config: dict, data_root, out_dir, stage: str = "all", resume: bool = False, device: str = "auto",
          progress=None) -> dict:
    """The engine's trainer (engines.registry): stages autoencoder, denoiser or all."""
    return {"engine": MadAdEngine.name,
            **train_latent_engine(config, data_root, out_dir, stage, resume, device, progress, denoiser_stage,
                                  DESCRIPTION)}
