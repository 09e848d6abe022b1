"""The `autoencoder` stage: the shared LatentCodec trained on healthy slices, and its reuse.

Loss: L1 between slice and reconstruction + `kl_weight` x KL of the posterior to N(0, 1)
(KL summed over latent cells, mean over the batch, as in MONAI's generative tutorials; a weight
of about 1e-6 keeps the latent close to deterministic while bounding its scale) + optionally
`gradient_weight` x L1 between the image gradients of slice and reconstruction, a cheap,
network-free stand-in for the perceptual loss that keeps edges from blurring. Intensity
augmentation (training.augment) widens the inputs the codec reconstructs faithfully: the
autoencoder must reproduce anything, lesions included; healing is the denoiser's job.

After every run of the stage, the per-channel latent statistics are measured on the training
slices (see `network`) and the codec is written to `autoencoder_final.pt` (state dict + network
config + summary, whose `complete` says whether the stage's budget is spent) beside the stage
checkpoint, or at the recipe's `autoencoder_path`. A run stopped at the end of a working period
thus leaves an autoencoder to measure, but not one a denoiser may train on.

Both latent engines share one autoencoder. The 0.2 recipes train it in a training-state folder of
its own (`uadc train --stage autoencoder --state training-state/latent-autoencoder-t1`) and name
that folder as `autoencoder_state`; the 0.1 recipes name the same `autoencoder_path` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...errors import InputError
from ...resources import SOURCE_CHECKOUT
from ...training import slice_cache
from ...training.augment import Augment
from ...training.loop import checkpoint_path, random_batch, save_atomic
from ...training.stage_runner import StageSpec, run_stage
from ...zoo.registry import sha256_file
from .network import DEFAULT_AUTOENCODER, LatentCodec, build_codec, kl_divergence

FINAL_FILE = "autoencoder_final.pt"
STATISTICS_SLICES = 2048  # slices whose latents give the per-channel mean and sd
AUTOENCODER_RECIPE = "UADContrastive/Resources/Models/recipes/latent-autoencoder-t1.yaml"


def autoencoder_state_dir(config: dict) -> Path | None:
    """The recipe's `autoencoder_state`: the training-state folder the shared autoencoder trains
    in. A relative folder is looked up from the current directory, then from the repository root
    (the folder holding training-state/), so a recipe names it the same on every machine."""
    given = config.get("autoencoder_state")
    if not given:
        return None
    path = Path(given).expanduser()
    if path.is_absolute() or path.is_dir():
        return path
    if (SOURCE_CHECKOUT / path).is_dir():
        return SOURCE_CHECKOUT / path
    raise InputError(given, f"(the recipe's autoencoder_state) is a folder neither under the current directory "
                     f"nor under the repository root {SOURCE_CHECKOUT}.",
                     f"Train the shared autoencoder there first: uadc train --config {AUTOENCODER_RECIPE} "
                     f"--stage autoencoder --state {given} --data ... --out ...")


def autoencoder_path(config: dict, out_dir: Path) -> Path:
    """Where the finished autoencoder is (or will be): in the recipe's `autoencoder_state` folder,
    else at its `autoencoder_path`, else beside this run's checkpoints."""
    state = autoencoder_state_dir(config)
    if state is not None:
        return state / FINAL_FILE
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
               "complete": result["budget_spent"], "batch_size": batch_size, "final_loss": result["final_loss"],
               "history": result["history"],
               "kl_weight": kl_weight, "gradient_weight": gradient_weight,
               "validation_brain_l1": round(brain_l1(codec, val_images.to(device), val_brains.to(device)), 5),
               "validation_slices": len(val_images), "train_subjects": len(train_ids)}
    save_atomic({"model": codec.state_dict(), "network": network, "summary": summary}, autoencoder_path(config, out_dir))
    return codec, summary


def autoencoder_finished(path: Path) -> bool:
    """An autoencoder file is at `path` and its budget was spent (not one written by a run stopped
    early). Files from before the `complete` flag were only written at the end of their budget."""
    path = Path(path)
    return path.is_file() and torch.load(path, map_location="cpu", weights_only=True).get("summary", {}).get("complete", True)


@dataclass
class FinishedAutoencoder:
    codec: LatentCodec
    network: dict    # its network config (the card's network.autoencoder)
    summary: dict    # its training figures
    file: Path
    sha256: str      # what the encoded latents and every denoiser checkpoint are tied to


def load_autoencoder(path: Path, device: torch.device) -> FinishedAutoencoder:
    """The finished autoencoder at `path`; InputError saying what to run when it is missing or its
    budget is not spent yet (a denoiser trained on it would be tied to weights that still change)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "holds no trained autoencoder: run the 'autoencoder' stage first "
                         "(or name a finished one in the recipe's autoencoder_state or autoencoder_path).")
    state = torch.load(path, map_location=device, weights_only=True)
    summary = dict(state.get("summary", {}))
    if not summary.get("complete", True):
        resume = (f"uadc train --resume {path.parent} --stage autoencoder --data ... --out ..."
                  if (path.parent / "recipe.yaml").is_file() else "run the 'autoencoder' stage with --resume.")
        raise InputError(path, f"is an autoencoder stopped after {summary.get('minutes')} minutes "
                         f"({summary.get('steps')} steps), before its budget was spent.",
                         f"Finish it first: {resume}")
    codec = build_codec(state["network"]).to(device)
    codec.load_state_dict(state["model"])
    return FinishedAutoencoder(codec.eval(), dict(state["network"]), summary, path, sha256_file(path))
