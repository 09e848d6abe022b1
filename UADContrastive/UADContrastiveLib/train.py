"""Training of the contrastive-diffusion engine: `uadc train` and `train()`.

Stages:
  encoder   - contrastive pre-training (NT-Xent) of the slice encoder: positive pair =
              an intensity-augmented healthy slice and an anomaly-imitating view of it.
  diffusion - the latent-conditioned UNet predicting x0 (L1), encoder frozen (or jointly
              trained with diffusion.train_encoder); writes the model folder.
  all       - both.
Data: IXI T1 slices from the slice cache (built on first use), split by subject with
`datasets.split`. Budgets are wall-clock minutes; checkpoints (model, optimizer, EMA,
step, elapsed time, every RNG state) are written every `checkpoint_minutes` and at the
end, and `resume=True` continues bit-exactly from them. Under torchrun (WORLD_SIZE > 1)
training runs with DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from . import datasets, slice_cache
from .corruptions import anomaly_view
from .engines.contrastive_diffusion import (
    DEFAULT_INFERENCE,
    ENCODER_FILE,
    UNET_FILE,
    ContrastiveDiffusionEngine,
)
from .io import atomic_path, write_text
from .models.diffusion import add_noise, build_scheduler, build_unet, draw_noise, to_model
from .models.encoder import build_encoder, contrastive_loss
from .resources import SHIPPED_MODELS, user_cache_dir
from .zoo import sha256_file

DEFAULT_CONFIG = SHIPPED_MODELS / "train_config.yaml"


# ---------------------------------------------------------------------- configuration
def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The default config, updated (deeply) by the YAML file `path` and `overrides`."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    if path:
        config = _deep_update(config, yaml.safe_load(Path(path).read_text()) or {})
    return _deep_update(config, overrides or {})


def _deep_update(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------- distributed
class Dist:
    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        self.device = device
        if self.enabled and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        if self.enabled and device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def agree(self, flag: bool) -> bool:
        """True when any rank says True (used to stop all ranks together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(value)
        return bool(value.item() > 0)


# ---------------------------------------------------------------------- augmentation
class Augment:
    """MONAI intensity augmentation of single slices, inside the brain; state can be saved."""

    def __init__(self, config: dict, seed: int):
        from monai.transforms import (
            RandAdjustContrast,
            RandBiasField,
            RandGaussianNoise,
            RandGaussianSmooth,
        )
        self.transforms = [
            RandAdjustContrast(prob=config.get("gamma", 0.0), gamma=(0.7, 1.5)),
            RandBiasField(prob=config.get("bias_field", 0.0), coeff_range=(0.0, 0.3), degree=3),
            RandGaussianSmooth(prob=config.get("blur", 0.0), sigma_x=(0.25, 0.8), sigma_y=(0.25, 0.8)),
            RandGaussianNoise(prob=config.get("noise", 0.0), std=0.02),
        ]
        for k, transform in enumerate(self.transforms):
            transform.set_random_state(seed + k)

    def __call__(self, images: torch.Tensor, brains: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            x = image
            for transform in self.transforms:
                x = transform(x)
            x = torch.as_tensor(np.asarray(x), dtype=torch.float32) if not torch.is_tensor(x) else x
            out.append(x.as_tensor() if hasattr(x, "as_tensor") else x)
        return (torch.stack(out).float().clamp(0.0, 1.5) * (brains > 0)).contiguous()

    def state(self) -> list:
        return [t.R.get_state() for t in self.transforms]

    def set_state(self, states: list) -> None:
        for transform, state in zip(self.transforms, states):
            transform.R.set_state(state)


# ---------------------------------------------------------------------- training modules
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


# ---------------------------------------------------------------------- helpers
def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _log(path: Path | None, record: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def subject_ids(config: dict, data_root: Path | None, dist_: Dist | None = None) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): config['subjects'] if given, else datasets.split of data_root
    (building the slice cache for missing subjects on rank 0)."""
    if config.get("subjects"):
        return list(config["subjects"]["train"]), list(config["subjects"]["validation"])
    subjects = datasets.ixi_subjects(Path(data_root))
    if not subjects:
        raise FileNotFoundError(f"no IXI subjects (images/*_T1.nii.gz) under {data_root}")
    training, validation = datasets.split(subjects)
    if dist_ is None or dist_.main:
        slice_cache.build_cache(training + validation, config.get("cache_dir"))
    if dist_ is not None:
        dist_.barrier()
    return [s.id for s in training], [s.id for s in validation]


def validation_slices(ids: list[str], cache_dir, count: int, min_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, evenly spread subset of `count` validation slices: (images, brains) (N,1,H,W)."""
    data = slice_cache.SliceDataset(ids, cache_dir, min_fraction)
    if len(data) == 0:
        return torch.zeros(0, 1, 96, 96), torch.zeros(0, 1, 96, 96)
    pick = np.linspace(0, len(data) - 1, min(count, len(data))).round().astype(int)
    return (torch.from_numpy(data.images[pick][:, None].copy()),
            torch.from_numpy(data.brains[pick][:, None].astype(np.float32)))


def brain_mae(engine: ContrastiveDiffusionEngine, images: torch.Tensor, brains: torch.Tensor, seed: int = 0) -> float:
    """Mean |x - reconstruction| inside the brain over the given slices."""
    if len(images) == 0:
        return float("nan")
    recon = engine.reconstruct_slices(images, torch.Generator().manual_seed(seed))
    inside = brains > 0
    return float((images - recon).abs()[inside].mean())


def synthetic_lesion_auprc(engine: ContrastiveDiffusionEngine, ids: list[str], cache_dir=None,
                           seed: int = 0, min_fraction: float = 0.15, lesions: int = 3) -> dict:
    """AUPRC of |x - recon| inside the brain on validation volumes with synthetic 3D lesions
    (corruptions.insert_synthetic_lesions), over the slices of each volume holding a lesion."""
    from .corruptions import insert_synthetic_lesions
    from .metrics import auprc

    rng = np.random.default_rng(seed)
    scores, labels, healthy = [], [], []
    slice_count = 0
    for subject_id in ids:
        volume, brain = slice_cache.load_subject(subject_id, cache_dir)
        lesioned, lesion = insert_synthetic_lesions(volume, brain, rng, count=lesions)
        keep = np.intersect1d(slice_cache.brain_slices(brain, min_fraction),
                              np.flatnonzero(lesion.reshape(len(lesion), -1).any(1)))
        if len(keep) == 0:
            continue
        sub_brain = brain[keep]
        slice_count += len(keep)
        recon = engine.reconstruct(lesioned[keep], sub_brain)
        residual = np.abs(lesioned[keep] - recon)
        scores.append(residual[sub_brain])
        labels.append(lesion[keep][sub_brain])
        healthy.append(residual[sub_brain & ~lesion[keep]].mean())
    scores_all, labels_all = np.concatenate(scores), np.concatenate(labels)
    return {"auprc": round(auprc(scores_all, labels_all), 4),
            "lesion_voxel_share": round(float(labels_all.mean()), 4),
            "healthy_residual_mean": round(float(np.mean(healthy)), 4),
            "subjects": len(scores), "slices": slice_count,
            "test": "held-out IXI validation subjects with synthetic 3D lesions (insert_synthetic_lesions, "
                    f"{lesions} per volume, seed {seed}); voxels inside the brain of slices holding lesion"}


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


# ---------------------------------------------------------------------- the generic loop
class Budget:
    def __init__(self, minutes: float | None, max_steps: int | None, elapsed: float = 0.0, step: int = 0):
        self.seconds = None if minutes is None else float(minutes) * 60.0
        self.max_steps = max_steps
        self.start = time.perf_counter() - elapsed
        self.step = step

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def done(self) -> bool:
        if self.max_steps is not None and self.step >= self.max_steps:
            return True
        return self.seconds is not None and self.elapsed >= self.seconds


def _progress_bar(budget: Budget, label: str, enabled: bool):
    from tqdm import tqdm

    if budget.max_steps is not None:
        return tqdm(total=budget.max_steps, initial=budget.step, desc=label, disable=not enabled,
                    mininterval=5.0, unit="step")
    return tqdm(total=round(budget.seconds or 0), initial=min(round(budget.elapsed), round(budget.seconds or 0)),
                desc=f"{label} (seconds of budget)", disable=not enabled, mininterval=5.0, unit="s")


def _advance(bar, budget: Budget) -> None:
    if budget.max_steps is not None:
        bar.update(1)
    else:
        bar.update(max(0, min(round(budget.elapsed), bar.total) - bar.n))


def _count_step(budget: Budget, losses: list, loss: float, bar, progress, log_path) -> None:
    """Bookkeeping after one optimiser step: step count, bar, progress callback, log every 20 steps."""
    budget.step += 1
    losses.append(loss)
    bar.set_postfix(step=budget.step, loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    _advance(bar, budget)
    if progress:
        progress(min(1.0, budget.elapsed / budget.seconds) if budget.seconds else budget.step / max(1, budget.max_steps or 1))
    if budget.step % 20 == 0:
        _log(log_path, {"step": budget.step, "elapsed_s": round(budget.elapsed, 1), "loss": float(np.mean(losses[-20:]))})


def _checkpoint_path(config: dict, out_dir: Path, stage: str) -> Path:
    base = Path(config.get("checkpoint_dir") or user_cache_dir() / "training" / Path(out_dir).name)
    return base / f"{stage}.ckpt.pt"


def _rng_state(generator: torch.Generator, augment: Augment) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(), "augment": augment.state()}


def _set_rng_state(state: dict, generator: torch.Generator, augment: Augment) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    augment.set_state(state["augment"])


def _batch(dataset: slice_cache.SliceDataset, generator: torch.Generator, batch_size: int, device):
    index = torch.randint(len(dataset), (batch_size,), generator=generator).numpy()
    images = torch.from_numpy(dataset.images[index][:, None].copy())
    brains = torch.from_numpy(dataset.brains[index][:, None].astype(np.float32))
    return images.to(device), brains.to(device)


# ---------------------------------------------------------------------- stages
def train_encoder(config: dict, train_ids: list[str], out_dir: Path, resume: bool, dist_: Dist,
                  progress: Callable[[float], None] | None = None) -> nn.Module:
    cfg = config["encoder"]
    device = dist_.device
    seed = int(config.get("seed", 0)) + 1000 * dist_.rank
    torch.manual_seed(int(config.get("seed", 0)))  # identical initial weights on every rank
    encoder = build_encoder(cfg["network"]).to(device)
    module = dist_.wrap(ContrastiveModule(encoder))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    loss_fn = contrastive_loss(float(cfg["temperature"]))
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(config.get("augmentation", {}), seed)
    views = tuple(cfg.get("anomaly_views") or ())
    data = slice_cache.SliceDataset(train_ids, config.get("cache_dir"), float(config["min_slice_fraction"]))
    ckpt = _checkpoint_path(config, out_dir, "encoder")
    log_path = ckpt.with_name("encoder_log.jsonl") if dist_.main else None
    budget = Budget(cfg.get("minutes"), cfg.get("max_steps"))
    losses: list[float] = []
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        encoder.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"][min(dist_.rank, len(state["rng"]) - 1)], generator, augment)
        budget = Budget(cfg.get("minutes"), cfg.get("max_steps"), state["elapsed"], state["step"])
        losses = list(state.get("recent_losses", []))
    encoder.train()

    def save():
        rng = _gather(_rng_state(generator, augment), dist_)
        if dist_.main:
            _save_atomic({"model": encoder.state_dict(), "optimizer": optimizer.state_dict(), "step": budget.step,
                          "elapsed": budget.elapsed, "rng": rng, "config": cfg,
                          "recent_losses": losses[-50:]}, ckpt)

    bar = _progress_bar(budget, "encoder", dist_.main)
    last_ckpt = time.perf_counter()
    while not dist_.agree(budget.done()):
        images, brains = _batch(data, generator, int(cfg["batch_size"]), device)
        view1 = augment(images.cpu(), brains.cpu()).to(device)
        view2 = augment(images.cpu(), brains.cpu()).to(device)
        if views:
            view2 = anomaly_view(view2, brains, generator, views)
        with _autocast(device):
            p1, p2 = module(view1, view2)
            loss = loss_fn(p1.float(), p2.float())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _count_step(budget, losses, float(loss.detach()), bar, progress, log_path)
        if time.perf_counter() - last_ckpt > 60 * float(config.get("checkpoint_minutes", 5)):
            save()
            last_ckpt = time.perf_counter()
    bar.close()
    save()
    if dist_.main:
        summary = {"steps": budget.step, "minutes": round(budget.elapsed / 60, 2),
                   "final_loss": float(np.mean(losses[-50:])) if losses else None,
                   "anomaly_views": list(views), "batch_size": int(cfg["batch_size"]) * dist_.world}
        _save_atomic({"model": encoder.state_dict(), "summary": summary, "network": cfg["network"]},
                     ckpt.with_name("encoder_final.pt"))
    dist_.barrier()
    return encoder.eval()


def _gather(obj, dist_: Dist) -> list:
    if not dist_.enabled:
        return [obj]
    gathered = [None] * dist_.world
    dist.all_gather_object(gathered, obj)
    return gathered


def _load_pretrained_encoder(config: dict, out_dir: Path, device) -> tuple[nn.Module, dict]:
    path = _checkpoint_path(config, out_dir, "encoder").with_name("encoder_final.pt")
    if config["diffusion"].get("encoder_path"):
        path = Path(config["diffusion"]["encoder_path"])
    if not path.exists():
        raise FileNotFoundError(f"no pre-trained encoder at {path}: run the 'encoder' stage first "
                                "(or set diffusion.encoder_path)")
    state = torch.load(path, map_location=device, weights_only=False)
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
        encoder, encoder_summary = _load_pretrained_encoder(config, out_dir, device)
    elif conditioned:
        final = _checkpoint_path(config, out_dir, "encoder").with_name("encoder_final.pt")
        if final.exists():
            encoder_summary = torch.load(final, map_location="cpu", weights_only=False).get("summary", {})
    if not conditioned:
        encoder = None
    unet_cfg = {**cfg["network"]["unet"], "latent_dim": encoder.latent_dim if conditioned else 0}
    torch.manual_seed(int(config.get("seed", 0)) + 1)
    unet = build_unet(unet_cfg).to(device)
    ema = copy.deepcopy(unet).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    if encoder is not None:
        encoder.to(device)
        encoder.train(train_encoder_too)
        for p in encoder.parameters():
            p.requires_grad_(train_encoder_too)
    module = dist_.wrap(DiffusionModule(unet, encoder if conditioned else None))
    params = list(unet.parameters()) + (list(encoder.parameters()) if train_encoder_too else [])
    optimizer = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0)))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    scheduler = build_scheduler(cfg["network"].get("schedule"))
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(config.get("augmentation", {}), seed)
    min_fraction = float(config["min_slice_fraction"])
    data = slice_cache.SliceDataset(train_ids, config.get("cache_dir"), min_fraction)
    val_cfg = config.get("validation", {})
    val_images, val_brains = (validation_slices(val_ids, config.get("cache_dir"), int(val_cfg.get("slices", 128)), min_fraction)
                              if dist_.main and val_ids else (torch.zeros(0, 1, 96, 96), torch.zeros(0, 1, 96, 96)))
    ckpt = _checkpoint_path(config, out_dir, "diffusion")
    log_path = ckpt.with_name("diffusion_log.jsonl") if dist_.main else None
    budget = Budget(cfg.get("minutes"), cfg.get("max_steps"))
    history: list[dict] = []
    losses: list[float] = []
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if train_encoder_too and state.get("encoder") is not None:
            encoder.load_state_dict(state["encoder"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"][min(dist_.rank, len(state["rng"]) - 1)], generator, augment)
        budget = Budget(cfg.get("minutes"), cfg.get("max_steps"), state["elapsed"], state["step"])
        losses = list(state.get("recent_losses", []))
        history = state.get("history", [])
        encoder_summary = state.get("encoder_summary", encoder_summary)
    unet.train()
    inference = {**DEFAULT_INFERENCE, **config.get("inference", {})}
    network = {"conditioned": conditioned, "unet": unet_cfg, "schedule": cfg["network"].get("schedule"),
               "encoder": config["encoder"]["network"] if conditioned else None}

    def engine() -> ContrastiveDiffusionEngine:
        enc = copy.deepcopy(encoder).eval() if encoder is not None else None
        return ContrastiveDiffusionEngine(copy.deepcopy(ema), enc, network, inference, device)

    def save():
        rng = _gather(_rng_state(generator, augment), dist_)
        if dist_.main:
            _save_atomic({"model": unet.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                          "encoder": encoder.state_dict() if train_encoder_too else None,
                          "step": budget.step, "elapsed": budget.elapsed, "rng": rng, "history": history,
                          "encoder_summary": encoder_summary, "config": cfg,
                          "recent_losses": losses[-50:]}, ckpt)

    bar = _progress_bar(budget, "diffusion", dist_.main)
    last_ckpt = last_val = time.perf_counter()
    decay = float(cfg.get("ema", 0.995))
    t_low, t_high = (int(v) for v in cfg.get("t_range", [0, scheduler.num_train_timesteps]))
    p_anomaly = float(cfg.get("latent_from_anomaly_view", 0.0)) if conditioned else 0.0
    views = tuple(config["encoder"].get("anomaly_views") or ("patch_mask", "random_erase", "lesion_blobs"))
    warmup = max(1, int(cfg.get("warmup_steps", 20)))
    patch_cfg = cfg.get("patch") or {}
    while not dist_.agree(budget.done()):
        images, brains = _batch(data, generator, int(cfg["batch_size"]), device)
        x = augment(images.cpu(), brains.cpu()).to(device)
        t = torch.randint(t_low, t_high, (len(x),), generator=generator).to(device)
        noise = draw_noise(x.shape, generator, device, cfg)
        x0 = to_model(x)
        noise_mask = random_patch_masks(x.shape, generator, float(patch_cfg.get("probability", 0.0)),
                                        int(patch_cfg.get("size", 48))).to(device)
        x_t = noise_mask * add_noise(scheduler, x0, noise, t) + (1 - noise_mask) * x0
        condition = None
        if conditioned:
            condition = x.clone()
            pick = torch.rand(len(x), generator=generator) < p_anomaly
            if pick.any():
                idx = torch.nonzero(pick).flatten()
                condition[idx] = anomaly_view(x[idx], brains[idx], generator, views)
        for group in optimizer.param_groups:
            group["lr"] = float(cfg["lr"]) * min(1.0, (budget.step + 1) / warmup)
        with _autocast(device):
            prediction = module(x_t, t, condition, noise_mask)
            # pDDPM: the loss is on the noised region; the clean rest is context
            loss = ((prediction.float() - x0).abs() * noise_mask).sum() / noise_mask.sum().clamp_min(1.0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            d = min(decay, (1 + budget.step) / (10 + budget.step))
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            for e, b in zip(ema.buffers(), unet.buffers()):
                e.copy_(b)
        _count_step(budget, losses, float(loss.detach()), bar, progress, log_path)
        if dist_.main and len(val_images) and time.perf_counter() - last_val > 60 * float(val_cfg.get("every_minutes", 10)):
            mae = brain_mae(engine(), val_images, val_brains)
            history.append({"step": budget.step, "elapsed_s": round(budget.elapsed, 1),
                            "train_loss": float(np.mean(losses[-50:])), "val_brain_mae": round(mae, 5)})
            _log(log_path, history[-1])
            bar.write(f"step {budget.step}: validation brain MAE {mae:.4f}")
            last_val = time.perf_counter()
        if time.perf_counter() - last_ckpt > 60 * float(config.get("checkpoint_minutes", 5)):
            save()
            last_ckpt = time.perf_counter()
    bar.close()
    save()
    result = {"unet": unet, "ema": ema, "world_size": dist_.world}
    if dist_.main:
        final_images, final_brains = (validation_slices(val_ids, config.get("cache_dir"), int(val_cfg.get("final_slices", 512)), min_fraction)
                                      if val_ids else (val_images, val_brains))
        start = time.perf_counter()
        mae = brain_mae(engine(), final_images, final_brains)
        seconds = time.perf_counter() - start
        result.update({
            "network": network, "inference": inference, "history": history,
            "steps": budget.step, "minutes": round(budget.elapsed / 60, 2),
            "final_train_loss": float(np.mean(losses[-50:])) if losses else (history[-1]["train_loss"] if history else None),
            "validation": {"brain_mae": round(mae, 5), "slices": len(final_images),
                           "seconds_per_slice": round(seconds / max(1, len(final_images)), 4),
                           "what": "mean |x - reconstruction| inside the brain, normalised intensities "
                                   "(brain p1 -> 0, p99 -> 1), on evenly spread slices of the validation subjects"},
            "encoder_summary": encoder_summary, "batch_size": int(cfg["batch_size"]) * dist_.world,
            "engine": engine(), "encoder": encoder,
        })
    dist_.barrier()
    return result


# ---------------------------------------------------------------------- model folder
def write_model_folder(out_dir: Path, config: dict, result: dict, train_ids: list[str], val_ids: list[str],
                       device: torch.device, wall_seconds: float, extra: dict | None = None) -> Path:
    """State-dict-only weight files + model.json with their sha256 (written last, atomically)."""
    from .preprocess import INTENSITY_CLIP, INTENSITY_PERCENTILES
    from .templates import ModelGrid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine: ContrastiveDiffusionEngine = result["engine"]
    files = {}
    _save_atomic(engine.unet.state_dict(), out_dir / UNET_FILE)
    files[UNET_FILE] = sha256_file(out_dir / UNET_FILE)
    if engine.encoder is not None:
        _save_atomic(engine.encoder.state_dict(), out_dir / ENCODER_FILE)
        files[ENCODER_FILE] = sha256_file(out_dir / ENCODER_FILE)
    elif (out_dir / ENCODER_FILE).exists():
        (out_dir / ENCODER_FILE).unlink()
    try:
        from .templates import load_template
        template = load_template()
        template_name, grid = template.name, template.grid
    except FileNotFoundError:
        template_name, grid = "ixi-head-2mm", ModelGrid()
    card = {
        "name": config.get("name", out_dir.name),
        "version": str(config.get("version", "0.1.0")),
        "engine": "contrastive_diffusion",
        "modality": "T1",
        "description": "Contrastive-conditioned diffusion (Patricio et al. 2025) trained on healthy IXI T1 "
                       "slices; reconstructs a healthy-looking brain, anomalies appear in |x - reconstruction|.",
        "template": template_name,
        "model_grid": grid.to_dict(),
        "preprocessing": {"intensity_percentiles": list(INTENSITY_PERCENTILES), "intensity_clip": list(INTENSITY_CLIP),
                          "outside_brain": 0.0, "slice_axis": 0, "slice_min_brain_fraction": config["min_slice_fraction"],
                          "training_brain_mask": "DLMUSE parcellation > 0"},
        "network": result["network"],
        "inference": result["inference"],
        "training": {
            "data": "IXI T1 (healthy), ../shared/data/ixi_t1",
            "split_rule": datasets.SPLIT_RULE,
            "subjects": {"train": train_ids, "validation": val_ids},
            "wall_time_minutes": round(wall_seconds / 60, 1),
            "hardware": _hardware(device),
            "processes": result.get("world_size", 1),
            "torch": torch.__version__,
            "encoder": result.get("encoder_summary"),
            "diffusion": {"steps": result["steps"], "minutes": result["minutes"], "batch_size": result["batch_size"],
                          "final_train_l1": result["final_train_loss"], "history": result["history"]},
            "config": {k: v for k, v in config.items() if k != "subjects"},
        },
        "validation": result["validation"],
        "files": files,
    }
    if extra:
        card.update(extra)
    write_text(json.dumps(card, indent=2, default=_json_default) + "\n", out_dir / "model.json")
    return out_dir


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def export_checkpoint(config: dict, out_dir: str | Path, train_ids: list[str], val_ids: list[str],
                      validation_slices_count: int = 64, device: str = "cpu") -> Path:
    """Write a model folder from the current diffusion checkpoint (EMA weights) of a run that is
    still going or was interrupted; validation figures on `validation_slices_count` slices."""
    device_ = torch.device(device)
    cfg = config["diffusion"]
    ckpt = _checkpoint_path(config, Path(out_dir), "diffusion")
    state = torch.load(ckpt, map_location=device_, weights_only=False)
    conditioned = bool(cfg.get("conditioned", True))
    encoder = None
    if conditioned:
        encoder, _ = _load_pretrained_encoder(config, Path(out_dir), device_)
        if state.get("encoder") is not None:
            encoder.load_state_dict(state["encoder"])
    unet_cfg = {**cfg["network"]["unet"], "latent_dim": encoder.latent_dim if conditioned else 0}
    unet = build_unet(unet_cfg)
    unet.load_state_dict(state["ema"])
    network = {"conditioned": conditioned, "unet": unet_cfg, "schedule": cfg["network"].get("schedule"),
               "encoder": config["encoder"]["network"] if conditioned else None}
    inference = {**DEFAULT_INFERENCE, **config.get("inference", {})}
    engine = ContrastiveDiffusionEngine(unet, encoder.eval() if encoder is not None else None, network, inference, device_)
    images, brains = validation_slices(val_ids, config.get("cache_dir"), validation_slices_count,
                                       float(config["min_slice_fraction"]))
    start = time.perf_counter()
    mae = brain_mae(engine, images, brains)
    seconds = time.perf_counter() - start
    losses = state.get("recent_losses") or []
    result = {"network": network, "inference": inference, "history": state.get("history", []),
              "steps": state["step"], "minutes": round(state["elapsed"] / 60, 2),
              "final_train_loss": float(np.mean(losses)) if losses else None,
              "validation": {"brain_mae": round(mae, 5), "slices": len(images),
                             "seconds_per_slice": round(seconds / max(1, len(images)), 4),
                             "what": "mean |x - reconstruction| inside the brain, normalised intensities "
                                     "(brain p1 -> 0, p99 -> 1), on evenly spread slices of the validation subjects"},
              "encoder_summary": state.get("encoder_summary", {}), "batch_size": None,
              "engine": engine, "world_size": None}
    return write_model_folder(Path(out_dir), config, result, train_ids, val_ids, device_, state["elapsed"],
                              {"status": f"exported from a training checkpoint at step {state['step']}"})


# ---------------------------------------------------------------------- entry points
def train(config: dict, data_root: str | Path | None, out_dir: str | Path, stage: str = "all",
          resume: bool = False, device: str = "auto", progress: Callable[[float], None] | None = None) -> dict:
    """Train `stage` ("encoder", "diffusion" or "all"); the diffusion stage writes the model folder.

    Returns a summary dict (steps, minutes, validation MAE, model folder)."""
    from .engines.base import resolve_device

    if stage not in ("encoder", "diffusion", "all"):
        raise ValueError(f"stage must be encoder, diffusion or all, not {stage!r}")
    started = time.perf_counter()
    dist_ = Dist(resolve_device(device))
    if dist_.device.type == "cpu":
        torch.set_num_threads(int(config.get("threads") or min(2, os.cpu_count() or 1)))
    out_dir = Path(out_dir)
    train_ids, val_ids = subject_ids(config, data_root, dist_)
    summary: dict = {"train_subjects": len(train_ids), "validation_subjects": len(val_ids)}
    encoder = None
    conditioned = bool(config["diffusion"].get("conditioned", True))
    if stage in ("encoder", "all") and (conditioned or stage == "encoder"):
        sub = (lambda f: progress(0.25 * f)) if progress and stage == "all" else progress
        encoder = train_encoder(config, train_ids, out_dir, resume, dist_, sub)
        summary["encoder_steps"] = "done"
    if stage in ("diffusion", "all"):
        sub = (lambda f: progress(0.25 + 0.75 * f)) if progress and stage == "all" else progress
        result = train_diffusion(config, train_ids, val_ids, out_dir, resume, dist_, sub,
                                 encoder if stage == "all" else None)
        if dist_.main:
            write_model_folder(out_dir, config, result, train_ids, val_ids, dist_.device,
                               time.perf_counter() - started)
            summary.update({"steps": result["steps"], "minutes": result["minutes"],
                            "validation_brain_mae": result["validation"]["brain_mae"],
                            "model_dir": str(out_dir)})
    if dist_.enabled and dist.is_initialized():
        dist.destroy_process_group()
    return summary


def main_train(args) -> int:
    """`uadc train --data DIR --out MODEL_DIR --stage encoder|diffusion|all --config FILE --resume --device D`.

    `args` is an argparse Namespace with data, out, stage, config, resume, device."""
    config = load_config(getattr(args, "config", None))
    summary = train(config, args.data, args.out, stage=getattr(args, "stage", "all") or "all",
                    resume=bool(getattr(args, "resume", False)), device=getattr(args, "device", "auto") or "auto")
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2, default=str))
    return 0
