"""What the latent engines' `denoiser` stages share: building the engine's latent network and its
EMA copy from the recipe, running it under the stage runner, and turning the EMA weights into
the engine with its inference settings. Each engine supplies only its loss and validation.

A denoiser's checkpoint records the sha256 of the autoencoder whose latents it learnt; resuming it
on another autoencoder is refused (its latents would mean something else)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...errors import InputError
from ...training.loop import checkpoint_path
from ...training.stage_runner import StageSpec, run_stage
from ..diffusion_common import build_scheduler
from .engine import LatentEngine
from .training import FinishedAutoencoder

SUMMARY_KEYS = ("steps", "minutes", "seconds_per_step", "final_loss", "history")


@dataclass
class DenoiserSetup:
    engine_cls: type[LatentEngine]
    autoencoder: FinishedAutoencoder
    cfg: dict                    # the recipe's `denoiser` section
    network: dict                # the card's `network`: autoencoder, denoiser, schedule
    denoiser: nn.Module          # trained
    ema: nn.Module               # what the model folder keeps
    scheduler: object
    generator: torch.Generator   # the stage's batch and noise stream
    batch_size: int
    posterior: bool              # draw latents from the posterior instead of its mean


def prepare_denoiser(config: dict, autoencoder: FinishedAutoencoder, engine_cls: type[LatentEngine],
                     network_defaults: dict, seed_offset: int, device) -> DenoiserSetup:
    cfg = config["denoiser"]
    network = {"autoencoder": autoencoder.network, "denoiser": {**network_defaults, **cfg.get("network", {})},
               "schedule": {**engine_cls.default_schedule, **cfg.get("schedule", {})}}
    seed = int(config.get("seed", 0)) + seed_offset  # each engine its own stream: no two share an init
    torch.manual_seed(seed)
    denoiser = engine_cls.build_denoiser(network).to(device)
    return DenoiserSetup(engine_cls, autoencoder, cfg, network, denoiser, copy.deepcopy(denoiser).eval().requires_grad_(False),
                         build_scheduler(network["schedule"], engine_cls.default_schedule), torch.Generator().manual_seed(seed),
                         int(cfg["batch_size"]), bool(cfg.get("sample_posterior", False)))


def run_denoiser(setup: DenoiserSetup, name: str, loss: Callable[[], torch.Tensor], validate: Callable[[], dict],
                 config: dict, out_dir: Path, resume: bool, device, progress) -> dict:
    """Train setup.denoiser under the stage runner (EMA, budgets, checkpoints); its summary."""
    cfg = setup.cfg
    checkpoint = checkpoint_path(config, out_dir, name)

    def same_autoencoder(state: dict) -> None:
        trained_on = state.get("autoencoder_sha256")
        if trained_on is not None and trained_on != setup.autoencoder.sha256:
            raise InputError(checkpoint, f"was trained on another autoencoder (sha256 {trained_on[:12]}...) than "
                             f"{setup.autoencoder.file} ({setup.autoencoder.sha256[:12]}...).",
                             "Resume it with the autoencoder it started on, or start the denoiser anew "
                             "(without --resume, in a new state folder).")

    spec = StageSpec(
        name=name, model=setup.denoiser, generator=setup.generator, loss=loss, ema=setup.ema,
        ema_decay=float(cfg.get("ema", 0.995)),
        optimizer=torch.optim.AdamW(setup.denoiser.parameters(), lr=float(cfg["lr"]),
                                    weight_decay=float(cfg.get("weight_decay", 0.0))),
        lr=float(cfg["lr"]), minutes=cfg.get("minutes"), max_steps=cfg.get("max_steps"),
        warmup_steps=int(cfg.get("warmup_steps", 50)), validate=validate,
        validate_every_minutes=float(cfg.get("validate_every_minutes", 10)),
        extra_state={"autoencoder_sha256": setup.autoencoder.sha256}, resumed=same_autoencoder)
    result = run_stage(spec, checkpoint, device, resume,
                       float(config.get("checkpoint_minutes", 5)), progress)
    return {**{k: result[k] for k in SUMMARY_KEYS}, "batch_size": setup.batch_size}


def trained_engine(setup: DenoiserSetup, config: dict, device) -> LatentEngine:
    """The engine with the EMA weights and the recipe's inference settings for this engine only
    (the shared defaults file also carries the contrastive engine's)."""
    defaults = setup.engine_cls.default_inference
    given = {k: v for k, v in (config.get("inference") or {}).items() if k in defaults}
    return setup.engine_cls(setup.autoencoder.codec, setup.ema, setup.network, {**defaults, **given}, device)
