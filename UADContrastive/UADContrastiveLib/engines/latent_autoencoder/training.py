"""The `autoencoder` stage: the shared LatentCodec trained on healthy slices, and its reuse.

Loss: L1 between slice and reconstruction + `kl_weight` x KL of the posterior to N(0, 1)
(KL summed over latent cells, mean over the batch, as in MONAI's generative tutorials; a weight
of about 1e-6 keeps the latent close to deterministic while bounding its scale) + optionally
`gradient_weight` x L1 between the image gradients of slice and reconstruction, a cheap,
network-free stand-in for the perceptual loss that keeps edges from blurring. Intensity
augmentation (training.augment) widens the inputs the codec reconstructs faithfully: the
autoencoder must reproduce anything, lesions included; healing is the denoiser's job.

After training, the per-channel latent statistics are measured on the training slices (see
`network`) and the codec is written to `autoencoder_final.pt` (state dict + network config +
summary) at the recipe's `autoencoder_path`, or beside the stage checkpoint. Both latent
engines' recipes name the same `autoencoder_path`, so the autoencoder is trained once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ...training import slice_cache
from ...training.augment import Augment
from ...training.loop import checkpoint_path, random_batch, save_atomic
from ...training.stage_runner import StageSpec, run_stage
from .network import DEFAULT_AUTOENCODER, LatentCodec, build_codec, kl_divergence

FINAL_FILE = "autoencoder_final.pt"
STATISTICS_SLICES = 2048  # slices whose latents give the per-channel mean and sd


def autoencoder_path(config: dict, out_dir: Path) -> Path:
    """Where the finished autoencoder is (or will be): the recipe's `autoencoder_path`, else
    beside this run's checkpoints."""
    given = config.get("autoencoder_path")
    return Path(given).expanduser() if given else checkpoint_path(config, out_dir, "autoencoder").with_name(FINAL_FILE)


def gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical finite differences of a and b."""
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    return 0.5 * (dy.abs().mean() + dx.abs().mean())


def autoencoder_loss(codec: LatentCodec, slices: torch.Tensor, kl_weight: float, gradient_weight: float):
    """(total loss, L1) of one batch."""
    reconstruction, mu, sigma = codec(slices)
    reconstruction = reconstruction.float()
    l1 = (reconstruction - slices).abs().mean()
    loss = l1 + kl_weight * kl_divergence(mu, sigma)
    if gradient_weight:
        loss = loss + gradient_weight * gradient_l1(reconstruction, slices)
    return loss, l1


@torch.no_grad()
def brain_l1(codec: LatentCodec, images: torch.Tensor, brains: torch.Tensor, batch_size: int = 64) -> float:
    """Mean |slice - decode(encode(slice))| inside the brain (posterior means, no sampling)."""
    if len(images) == 0:
        return float("nan")
    codec.eval()
    total = count = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        b = brains[start:start + batch_size] > 0
        mu, _ = codec.encode(x)
        total += float((codec.decode(mu) - x).abs()[b].sum())
        count += float(b.sum())
    return total / max(count, 1.0)


@torch.no_grad()
def measure_latent_statistics(codec: LatentCodec, images: torch.Tensor, batch_size: int = 64) -> None:
    """Set the codec's per-channel latent mean and sd from the posterior means of `images`."""
    codec.eval()
    codec.set_latent_statistics(torch.zeros(codec.latent_channels), torch.ones(codec.latent_channels))
    latents = torch.cat([codec.encode(images[s:s + batch_size])[0] for s in range(0, len(images), batch_size)])
    codec.set_latent_statistics(latents.mean(dim=(0, 2, 3)), latents.std(dim=(0, 2, 3)))


def train_autoencoder(config: dict, train_ids: list[str], val_ids: list[str], out_dir: Path, resume: bool,
                      device: torch.device, progress: Callable[[float], None] | None = None) -> tuple[LatentCodec, dict]:
    """Train the codec on the training slices; write autoencoder_final.pt; (codec, summary)."""
    cfg = config["autoencoder"]
    network = {**DEFAULT_AUTOENCODER, **cfg.get("network", {})}
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    codec = build_codec(network).to(device)
    min_fraction = float(config["min_slice_fraction"])
    data = slice_cache.SliceDataset(train_ids, config.get("cache_dir"), min_fraction)
    if len(data) == 0:
        raise ValueError("the autoencoder stage found no training slices")
    generator = torch.Generator().manual_seed(seed)
    augment = Augment(config.get("augmentation", {}), seed)
    batch_size = int(cfg["batch_size"])
    kl_weight, gradient_weight = float(cfg.get("kl_weight", 1e-6)), float(cfg.get("gradient_weight", 0.0))
    val_images, val_brains = slice_cache.validation_slices(val_ids, config.get("cache_dir"),
                                                           int(cfg.get("validation_slices", 64)), min_fraction)

    def loss() -> torch.Tensor:
        images, brains, positions = random_batch(data, generator, batch_size, device)
        return autoencoder_loss(codec, augment(images.cpu(), brains.cpu(), positions).to(device), kl_weight, gradient_weight)[0]

    spec = StageSpec(
        name="autoencoder", model=codec, generator=generator, augment=augment, loss=loss,
        optimizer=torch.optim.AdamW(codec.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0.0))),
        lr=float(cfg["lr"]), minutes=cfg.get("minutes"), max_steps=cfg.get("max_steps"),
        warmup_steps=int(cfg.get("warmup_steps", 20)),
        validate=lambda: {"val_brain_l1": round(brain_l1(codec, val_images.to(device), val_brains.to(device)), 5)},
        validate_every_minutes=float(cfg.get("validate_every_minutes", 10)))
    result = run_stage(spec, checkpoint_path(config, out_dir, "autoencoder"), device, resume,
                       float(config.get("checkpoint_minutes", 5)), progress)
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:STATISTICS_SLICES].numpy()
    measure_latent_statistics(codec, torch.from_numpy(data.images[pick][:, None].copy()).to(device))
    summary = {"steps": result["steps"], "minutes": result["minutes"], "seconds_per_step": result["seconds_per_step"],
               "batch_size": batch_size, "final_loss": result["final_loss"], "history": result["history"],
               "kl_weight": kl_weight, "gradient_weight": gradient_weight,
               "validation_brain_l1": round(brain_l1(codec, val_images.to(device), val_brains.to(device)), 5),
               "validation_slices": len(val_images), "train_subjects": len(train_ids)}
    save_atomic({"model": codec.state_dict(), "network": network, "summary": summary}, autoencoder_path(config, out_dir))
    return codec, summary


def load_autoencoder(path: Path, device: torch.device) -> tuple[LatentCodec, dict, dict]:
    """(codec, network config, training summary) of a finished autoencoder_final.pt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trained autoencoder at {path}: run the 'autoencoder' stage first "
                                "(or set autoencoder_path in the recipe to a finished one)")
    state = torch.load(path, map_location=device, weights_only=True)
    codec = build_codec(state["network"]).to(device)
    codec.load_state_dict(state["model"])
    return codec.eval(), dict(state["network"]), dict(state.get("summary", {}))
