"""One training stage run under a wall-clock budget, with checkpoints and bit-exact resume.

A stage is described by `StageSpec`: the module whose weights train, its optimiser, a
`loss()` closure that draws its own batch and returns the loss, and optionally an EMA copy,
an intensity augmentation and a validation callback. `run_stage` owns everything around the
loss: learning-rate warm-up, mixed precision on CUDA only, the EMA update, the step budget
(minutes and/or max_steps), progress and log, checkpoints every `checkpoint_minutes` and at
the end (model, EMA, optimiser, step, elapsed time, every random state), and resuming from
them. The latent engines (`engines/latent_autoencoder`, `mad_ad`, `latent_ddpm`) train
every stage through it, so each stage file holds only its networks and its loss.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .augment import Augment
from .loop import (
    Budget,
    autocast,
    count_step,
    load_checkpoint,
    log_record,
    progress_bar,
    rng_state,
    save_atomic,
    set_rng_state,
)


@dataclass
class StageSpec:
    name: str                                  # progress label; the checkpoint is <name>.ckpt.pt
    model: nn.Module                           # the trained weights
    optimizer: torch.optim.Optimizer
    loss: Callable[[], torch.Tensor]           # draws a batch, returns the scalar loss (graph attached)
    generator: torch.Generator                 # the stage's batch / noise random stream
    lr: float
    minutes: float | None
    max_steps: int | None
    warmup_steps: int = 20
    augment: Augment | None = None
    ema: nn.Module | None = None
    ema_decay: float = 0.995
    validate: Callable[[], dict] | None = None  # -> figures logged into the history
    validate_every_minutes: float = 10.0
    grad_clip: float | None = 1.0
    extra_state: dict = field(default_factory=dict)  # written into the checkpoint as is


def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA with the usual warm-up ((1 + step) / (10 + step)) so early averages are not all init."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def run_stage(spec: StageSpec, checkpoint: Path, device: torch.device, resume: bool = False,
              checkpoint_minutes: float = 5.0, progress: Callable[[float], None] | None = None) -> dict:
    """Train `spec` until its budget is spent; returns {steps, minutes, final_loss, history}.

    With resume=True and an existing checkpoint the run continues from it exactly (same
    batches and noise as an uninterrupted run)."""
    checkpoint = Path(checkpoint)
    log_path = checkpoint.with_name(f"{spec.name}_log.jsonl")
    budget = Budget(spec.minutes, spec.max_steps)
    losses: list[float] = []
    history: list[dict] = []
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        spec.model.load_state_dict(state["model"])
        if spec.ema is not None and state.get("ema") is not None:
            spec.ema.load_state_dict(state["ema"])
        spec.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], spec.generator, spec.augment)
        budget = Budget(spec.minutes, spec.max_steps, state["elapsed"], state["step"])
        losses = list(state.get("recent_losses", []))
        history = list(state.get("history", []))

    def save() -> None:
        save_atomic({"model": spec.model.state_dict(), "ema": spec.ema.state_dict() if spec.ema is not None else None,
                     "optimizer": spec.optimizer.state_dict(), "step": budget.step, "elapsed": budget.elapsed,
                     "rng": rng_state(spec.generator, spec.augment), "recent_losses": losses[-50:],
                     "history": history, **spec.extra_state}, checkpoint)

    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    params = [p for p in spec.model.parameters() if p.requires_grad]
    spec.model.train()
    bar = progress_bar(budget, spec.name, True)
    last_checkpoint = last_validation = time.perf_counter()
    warmup = max(1, int(spec.warmup_steps))
    while not budget.done():
        for group in spec.optimizer.param_groups:
            group["lr"] = spec.lr * min(1.0, (budget.step + 1) / warmup)
        with autocast(device):
            loss = spec.loss()
        spec.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss.float()).backward()
        if spec.grad_clip:
            scaler.unscale_(spec.optimizer)
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        scaler.step(spec.optimizer)
        scaler.update()
        if spec.ema is not None:
            update_ema(spec.ema, spec.model, spec.ema_decay, budget.step)
        count_step(budget, losses, float(loss.detach()), bar, progress, log_path)
        if spec.validate and time.perf_counter() - last_validation > 60 * spec.validate_every_minutes:
            history.append({"step": budget.step, "elapsed_s": round(budget.elapsed, 1),
                            "train_loss": float(np.mean(losses[-50:])), **spec.validate()})
            log_record(log_path, history[-1])
            spec.model.train()
            last_validation = time.perf_counter()
        if time.perf_counter() - last_checkpoint > 60 * checkpoint_minutes:
            save()
            last_checkpoint = time.perf_counter()
    bar.close()
    save()
    spec.model.eval()
    return {"steps": budget.step, "minutes": round(budget.elapsed / 60, 2),
            "seconds_per_step": round(budget.elapsed / max(1, budget.step), 4),
            "final_loss": float(np.mean(losses[-50:])) if losses else None, "history": history}
