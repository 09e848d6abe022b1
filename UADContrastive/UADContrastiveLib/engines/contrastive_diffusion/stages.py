"""Training stages of the contrastive-diffusion engine (entry point: `training.train`).

Stages:
  encoder   - contrastive pre-training (NT-Xent) of the slice encoder: positive pair =
              an intensity-augmented healthy slice and an anomaly-imitating view of it.
  diffusion - the latent-conditioned UNet predicting x0 (L1), encoder frozen (or jointly
              trained with diffusion.train_encoder), optionally patched (pDDPM: a random
              square is noised, the clean rest is context) and with multiscale noise.
  all       - both; the diffusion stage writes the model folder (`model_folder`).
Data: IXI T1 slices from the slice cache (built on first use through the detection path),
split by subject with `datasets.split`. Both stages run on `training.stage_runner` (budgets,
checkpoints, bit-exact resume, EMAs, DistributedDataParallel under torchrun); this file holds
their networks, batches and losses.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...training import slice_cache
from ...training.augment import Augment
from ...training.corruptions import anomaly_view
from ...training.distributed import Dist
from ...training.loop import checkpoint_path, load_checkpoint, random_batch, save_atomic
from ...training.slice_cache import validation_slices
from ...training.stage_runner import JointModule, StageSpec, run_stage
from ..base import load_weights
from ..diffusion_common import build_scheduler
from .diffusion import DEFAULT_SCHEDULE, add_noise, build_unet, draw_noise, to_model
from .encoder import build_encoder, contrastive_loss
from .engine import DEFAULT_INFERENCE, ENCODER_FILE, UNET_FILE, ContrastiveDiffusionEngine


class ContrastiveModule(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        return self.encoder.project(self.encoder(view1)), self.encoder.project(self.encoder(view2))


class DiffusionModule(nn.Module):
    def __init__(self, unet: nn.Module, encoder: nn.Module | None):
        super().__init__()
        self.unet = unet
        self.encoder = encoder

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None,
                noise_mask: torch.Tensor | None = None):
        latent = self.encoder(condition) if self.encoder is not None else None
        return self.unet(x_t, t, latent, noise_mask)


VALIDATION_WHAT = ("mean |x - reconstruction| inside the brain, normalised intensities (brain p1 -> 0, p99 -> 1), "
                   "on evenly spread slices of the validation subjects")


def brain_mae(engine: ContrastiveDiffusionEngine, images: torch.Tensor, brains: torch.Tensor, seed: int = 0) -> float:
    """Mean |x - reconstruction| inside the brain over the given slices."""
    if len(images) == 0:
        return float("nan")
    recon = engine.reconstruct_slices(images, torch.Generator().manual_seed(seed))
    inside = brains > 0
    return float((images - recon).abs()[inside].mean())


def frozen_copy(module: nn.Module) -> nn.Module:
    """An EMA twin of `module`: a copy in eval mode whose parameters take no gradient."""
    twin = copy.deepcopy(module).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def random_patch_masks(shape, generator: torch.Generator, probability: float, size: int) -> torch.Tensor:
    """(B,1,H,W) float masks of the region to noise: a random size x size square for a share
    `probability` of the batch (patched training, Behrendt et al.'s pDDPM), all ones otherwise."""
    b, _, h, w = shape
    masks = torch.ones((b, 1, h, w))
    if probability <= 0:
        return masks
    for i in torch.nonzero(torch.rand(b, generator=generator) < probability).flatten().tolist():
        y = int(torch.randint(0, max(1, h - size + 1), (1,), generator=generator))
        x = int(torch.randint(0, max(1, w - size + 1), (1,), generator=generator))
        masks[i].zero_()
        masks[i, :, y:y + size, x:x + size] = 1.0
    return masks


def train_encoder(config: dict, train_ids: list[str], out_dir: Path, resume: bool, dist_: Dist,
                  progress: Callable[[float], None] | None = None) -> nn.Module:
    """Contrastive pre-training of the encoder (constant learning rate, no EMA, no clipping);
    writes encoder_final.pt (weights, network, summary) beside the checkpoint."""
    cfg = config["encoder"]
    device = dist_.device
    seed = int(config.get("seed", 0)) + 1000 * dist_.rank
    torch.manual_seed(int(config.get("seed", 0)))  # identical initial weights on every rank
    encoder = build_encoder(cfg["network"]).to(device)
    module = dist_.wrap(ContrastiveModule(encoder))
    loss_fn = contrastive_loss(float(cfg["temperature"]))
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(config.get("augmentation", {}), seed)
    views = tuple(cfg.get("anomaly_views") or ())
    data = slice_cache.SliceDataset(train_ids, config.get("cache_dir"), float(config["min_slice_fraction"]))

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of the same slices: intensity-augmented, the second also anomaly-imitating."""
        images, brains, positions = random_batch(data, generator, int(cfg["batch_size"]), device)
        view1 = augment(images.cpu(), brains.cpu(), positions).to(device)
        view2 = augment(images.cpu(), brains.cpu(), positions).to(device)
        if views:
            view2 = anomaly_view(view2, brains, generator, views)
        return view1, view2

    def loss(view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        p1, p2 = module(view1, view2)
        return loss_fn(p1.float(), p2.float())

    spec = StageSpec(
        name="encoder", model=encoder, batch=batch, loss=loss, generator=generator, augment=augment,
        optimizer=torch.optim.AdamW(encoder.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])),
        lr=float(cfg["lr"]), minutes=cfg.get("minutes"), max_steps=cfg.get("max_steps"), warmup_steps=1,
        grad_clip=None, extra_state={"config": cfg})
    ckpt = checkpoint_path(config, out_dir, "encoder")
    result = run_stage(spec, ckpt, device, resume, float(config.get("checkpoint_minutes", 5)), progress, dist_)
    if dist_.main:
        summary = {"steps": result["steps"], "minutes": result["minutes"], "final_loss": result["final_loss"],
                   "anomaly_views": list(views), "batch_size": int(cfg["batch_size"]) * dist_.world}
        save_atomic({"model": encoder.state_dict(), "summary": summary, "network": cfg["network"]},
                    ckpt.with_name("encoder_final.pt"))
    dist_.barrier()
    return encoder.eval()


def load_pretrained_encoder(config: dict, out_dir: Path, device) -> tuple[nn.Module, dict]:
    init_from = config["diffusion"].get("init_from")
    if init_from:  # warm start from a model folder: its encoder replaces the contrastive stage
        encoder = build_encoder(config["encoder"]["network"]).to(device)
        load_weights(encoder, Path(init_from) / ENCODER_FILE, device)
        return encoder, {"initialised_from": str(init_from)}
    path = checkpoint_path(config, out_dir, "encoder").with_name("encoder_final.pt")
    if config["diffusion"].get("encoder_path"):
        path = Path(config["diffusion"]["encoder_path"])
    if not path.exists():
        raise FileNotFoundError(f"no pre-trained encoder at {path}: run the 'encoder' stage first "
                                "(or set diffusion.encoder_path)")
    state = load_checkpoint(path, device)
    encoder = build_encoder(state.get("network", config["encoder"]["network"])).to(device)
    encoder.load_state_dict(state["model"])
    return encoder, state.get("summary", {})


def train_diffusion(config: dict, train_ids: list[str], val_ids: list[str], out_dir: Path, resume: bool,
                    dist_: Dist, progress: Callable[[float], None] | None = None,
                    encoder: nn.Module | None = None) -> dict:
    cfg = config["diffusion"]
    device = dist_.device
    seed = int(config.get("seed", 0)) + 1000 * dist_.rank
    conditioned = bool(cfg.get("conditioned", True))
    train_encoder_too = conditioned and bool(cfg.get("train_encoder", False))
    encoder_summary = {}
    if conditioned and encoder is None:
        encoder, encoder_summary = load_pretrained_encoder(config, out_dir, device)
    elif conditioned:
        final = checkpoint_path(config, out_dir, "encoder").with_name("encoder_final.pt")
        if final.exists():
            encoder_summary = load_checkpoint(final).get("summary", {})
    if not conditioned:
        encoder = None
    unet_cfg = {**cfg["network"]["unet"], "latent_dim": encoder.latent_dim if conditioned else 0}
    torch.manual_seed(int(config.get("seed", 0)) + 1)
    unet = build_unet(unet_cfg).to(device)
    if cfg.get("init_from"):
        load_weights(unet, Path(cfg["init_from"]) / UNET_FILE, device)
    ema = frozen_copy(unet)
    if encoder is not None:
        encoder.to(device)
        encoder.train(train_encoder_too)
        for p in encoder.parameters():
            p.requires_grad_(train_encoder_too)
    # the encoder trained jointly gets its own EMA, so inference pairs averaged with averaged
    encoder_ema = frozen_copy(encoder) if train_encoder_too else None
    if device.type == "cpu":
        # channels-last convolutions: 2.5x faster training steps on the CPU (measured: batch 32,
        # two threads, 6.0 -> 2.4 s), the same maths up to float rounding
        for part in (unet, encoder):
            if part is not None:
                part.to(memory_format=torch.channels_last)
    module = dist_.wrap(DiffusionModule(unet, encoder if conditioned else None))
    params = list(unet.parameters()) + (list(encoder.parameters()) if train_encoder_too else [])
    scheduler = build_scheduler(cfg["network"].get("schedule"), DEFAULT_SCHEDULE)
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(config.get("augmentation", {}), seed)
    min_fraction = float(config["min_slice_fraction"])
    data = slice_cache.SliceDataset(train_ids, config.get("cache_dir"), min_fraction)
    val_cfg = config.get("validation", {})
    val_images, val_brains = (validation_slices(val_ids, config.get("cache_dir"), int(val_cfg.get("slices", 128)), min_fraction)
                              if dist_.main and val_ids else (torch.zeros(0, 1, 96, 96), torch.zeros(0, 1, 96, 96)))
    inference = {**DEFAULT_INFERENCE, **config.get("inference", {})}
    network = {"conditioned": conditioned, "unet": unet_cfg, "schedule": cfg["network"].get("schedule"),
               "encoder": config["encoder"]["network"] if conditioned else None}

    def engine() -> ContrastiveDiffusionEngine:
        enc = copy.deepcopy(encoder_ema if encoder_ema is not None else encoder).eval() if encoder is not None else None
        return ContrastiveDiffusionEngine(copy.deepcopy(ema), enc, network, inference, device)

    t_low, t_high = (int(v) for v in cfg.get("t_range", [0, scheduler.num_train_timesteps]))
    p_anomaly = float(cfg.get("latent_from_anomaly_view", 0.0)) if conditioned else 0.0
    views = tuple(config["encoder"].get("anomaly_views") or ("patch_mask", "random_erase", "lesion_blobs"))
    patch_cfg = cfg.get("patch") or {}

    def batch() -> tuple:
        """(x0, x_t, t, condition, noise_mask) of a batch of augmented slices."""
        images, brains, positions = random_batch(data, generator, int(cfg["batch_size"]), device)
        x = augment(images.cpu(), brains.cpu(), positions).to(device)
        t = torch.randint(t_low, t_high, (len(x),), generator=generator).to(device)
        noise = draw_noise(x.shape, generator, device, cfg)
        x0 = to_model(x)
        noise_mask = random_patch_masks(x.shape, generator, float(patch_cfg.get("probability", 0.0)),
                                        int(patch_cfg.get("size", 48))).to(device)
        x_t = noise_mask * add_noise(scheduler, x0, noise, t) + (1 - noise_mask) * x0
        condition = None
        if conditioned:  # the latent of the clean slice, or of an anomaly-imitating view of it
            condition = x.clone()
            pick = torch.rand(len(x), generator=generator) < p_anomaly
            if pick.any():
                idx = torch.nonzero(pick).flatten()
                condition[idx] = anomaly_view(x[idx], brains[idx], generator, views)
        return x0, x_t, t, condition, noise_mask

    def loss(x0, x_t, t, condition, noise_mask) -> torch.Tensor:
        prediction = module(x_t, t, condition, noise_mask)
        # pDDPM: the loss is on the noised region; the clean rest is context
        return ((prediction.float() - x0).abs() * noise_mask).sum() / noise_mask.sum().clamp_min(1.0)

    def validate() -> dict:
        return {"val_brain_mae": round(brain_mae(engine(), val_images, val_brains), 5)}

    # what the checkpoint keeps besides the weights; the encoder's record comes back on resume
    kept = {"encoder_summary": encoder_summary, "config": cfg,
            **({} if train_encoder_too else {"encoder": None, "encoder_ema": None})}
    spec = StageSpec(
        name="diffusion", model=unet, batch=batch, loss=loss, generator=generator, augment=augment,
        optimizer=torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0))),
        lr=float(cfg["lr"]), minutes=cfg.get("minutes"), max_steps=cfg.get("max_steps"),
        warmup_steps=int(cfg.get("warmup_steps", 20)), ema=ema, ema_decay=float(cfg.get("ema", 0.995)),
        joint=[JointModule("encoder", encoder, encoder_ema)] if train_encoder_too else [],
        validate=validate if len(val_images) else None, validate_every_minutes=float(val_cfg.get("every_minutes", 10)),
        grad_clip=None, extra_state=kept,
        resumed=lambda state: kept.update(encoder_summary=state.get("encoder_summary", encoder_summary)))
    trained = run_stage(spec, checkpoint_path(config, out_dir, "diffusion"), device, resume,
                        float(config.get("checkpoint_minutes", 5)), progress, dist_)
    encoder_summary = kept["encoder_summary"]
    history = trained["history"]
    result = {"unet": unet, "ema": ema, "world_size": dist_.world}
    if dist_.main:
        final_images, final_brains = (validation_slices(val_ids, config.get("cache_dir"), int(val_cfg.get("final_slices", 512)), min_fraction)
                                      if val_ids else (val_images, val_brains))
        start = time.perf_counter()
        mae = brain_mae(engine(), final_images, final_brains)
        seconds = time.perf_counter() - start
        result.update({
            "network": network, "inference": inference, "history": history,
            "steps": trained["steps"], "minutes": trained["minutes"],
            "final_train_loss": trained["final_loss"] if trained["final_loss"] is not None else (history[-1]["train_loss"] if history else None),
            "validation": {"brain_mae": round(mae, 5), "slices": len(final_images),
                           "seconds_per_slice": round(seconds / max(1, len(final_images)), 4),
                           "what": VALIDATION_WHAT},
            "encoder_summary": encoder_summary, "batch_size": int(cfg["batch_size"]) * dist_.world,
            "engine": engine(), "encoder": encoder,
        })
    dist_.barrier()
    return result
