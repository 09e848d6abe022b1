"""One training stage run under a wall-clock budget, with checkpoints and bit-exact resume.

A stage is described by `StageSpec`: the module whose weights train, its optimiser, a `batch()`
closure that draws the next batch (outside mixed precision) and a `loss(*batch)` closure that
returns the loss, and optionally an EMA copy, modules trained jointly with the model (each
with its own EMA), an intensity augmentation whose random state is kept, and a validation
callback. `run_stage` owns everything around the loss: learning-rate warm-up, mixed precision
on CUDA only, the EMA updates, the step budget (minutes and/or max_steps, and the
session limit and SIGTERM through `loop.StopRequest`), progress and log, checkpoints every
`checkpoint_minutes` and at the end (model, EMAs, joint modules, optimiser, step, elapsed
time, every rank's random states), resuming from them, and the DistributedDataParallel
bookkeeping (`distributed.Dist`: all ranks stop together, rank 0 validates and writes).
Every engine's stages run through it: the contrastive encoder and the conditioned diffusion
(`engines/contrastive_diffusion/stages`), the latent autoencoder and the latent denoisers, so
each stage file holds only its networks, its batches and its loss.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .augment import Augment
from .distributed import Dist, gather
from .loop import StopRequest, autocast, load_checkpoint, save_atomic


class Budget:
    """A stage's total budget (minutes and/or steps), counted over every resumed run."""

    def __init__(self, minutes: float | None, max_steps: int | None, elapsed: float = 0.0, step: int = 0):
        self.seconds = None if minutes is None else float(minutes) * 60.0
        self.max_steps = max_steps
        self.start = time.perf_counter() - elapsed
        self.step = step

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def spent(self) -> bool:
        """The recipe's budget is used up (not merely this run stopped early)."""
        if self.max_steps is not None and self.step >= self.max_steps:
            return True
        return self.seconds is not None and self.elapsed >= self.seconds

    def done(self) -> bool:
        return StopRequest.active() or self.spent()


def progress_bar(budget: Budget, label: str, enabled: bool):
    from tqdm import tqdm

    if budget.max_steps is not None:
        return tqdm(total=budget.max_steps, initial=budget.step, desc=label, disable=not enabled,
                    mininterval=5.0, unit="step")
    return tqdm(total=round(budget.seconds or 0), initial=min(round(budget.elapsed), round(budget.seconds or 0)),
                desc=f"{label} (seconds of budget)", disable=not enabled, mininterval=5.0, unit="s")


def advance_bar(bar, budget: Budget) -> None:
    if budget.max_steps is not None:
        bar.update(1)
    else:
        bar.update(max(0, min(round(budget.elapsed), bar.total) - bar.n))


def count_step(budget: Budget, losses: list, loss: float, bar, progress, log_path) -> None:
    """Bookkeeping after one optimiser step: step count, bar, progress callback, log every 20 steps."""
    budget.step += 1
    losses.append(loss)
    bar.set_postfix(step=budget.step, loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    advance_bar(bar, budget)
    if progress:
        progress(min(1.0, budget.elapsed / budget.seconds) if budget.seconds else budget.step / max(1, budget.max_steps or 1))
    if budget.step % 20 == 0:
        log_record(log_path, {"step": budget.step, "elapsed_s": round(budget.elapsed, 1), "loss": float(np.mean(losses[-20:]))})


def rng_state(generator: torch.Generator, augment: Augment | None) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(),
            "augment": augment.state() if augment is not None else None}


def set_rng_state(state: dict, generator: torch.Generator, augment: Augment | None) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if augment is not None:
        augment.set_state(state["augment"])


def log_record(path: Path | None, record: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


@dataclass
class JointModule:
    """A module the stage's optimiser trains beside the model (the encoder fine-tuned with the
    diffusion UNet), with its own EMA; the checkpoint keeps it as `key` and its EMA as `key`_ema."""
    key: str
    module: nn.Module
    ema: nn.Module | None = None


@dataclass
class StageSpec:
    name: str                                  # progress label; the checkpoint is <name>.ckpt.pt
    model: nn.Module                           # the trained weights (unwrapped: DDP wrapping is the loss's)
    optimizer: torch.optim.Optimizer           # over the model's and the joint modules' parameters
    loss: Callable[..., torch.Tensor]          # loss(*batch()) -> the scalar loss (graph attached)
    generator: torch.Generator                 # the stage's batch / noise random stream
    lr: float
    minutes: float | None
    max_steps: int | None
    batch: Callable[[], tuple] = tuple         # draws the next batch; () when the loss draws its own
    warmup_steps: int = 20                     # 1: no warm-up
    augment: Augment | None = None
    ema: nn.Module | None = None
    ema_decay: float = 0.995
    joint: list[JointModule] = field(default_factory=list)
    validate: Callable[[], dict] | None = None  # -> figures logged into the history (rank 0 only)
    validate_every_minutes: float = 10.0
    grad_clip: float | None = 1.0
    extra_state: dict = field(default_factory=dict)  # written into the checkpoint as is, at every save
    resumed: Callable[[dict], None] | None = None     # given the checkpoint read on resume


def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA with the usual warm-up ((1 + step) / (10 + step)) so early averages are not all init."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def run_stage(spec: StageSpec, checkpoint: Path, device: torch.device, resume: bool = False,
              checkpoint_minutes: float = 5.0, progress: Callable[[float], None] | None = None,
              dist_: Dist | None = None) -> dict:
    """Train `spec` until its budget is spent; returns {steps, minutes, seconds_per_step, final_loss,
    history, budget_spent}, steps and minutes counted over every run of this checkpoint;
    budget_spent is False when the run stopped before the budget (session limit, signal).

    With resume=True and an existing checkpoint the run continues from it exactly (same
    batches and noise as an uninterrupted run). Under torchrun (`dist_` enabled) each rank
    keeps its own random streams in the checkpoint, written by rank 0."""
    checkpoint = Path(checkpoint)
    dist_ = dist_ or Dist(device, from_environment=False)
    log_path = checkpoint.with_name(f"{spec.name}_log.jsonl") if dist_.main else None
    budget = Budget(spec.minutes, spec.max_steps)
    losses: list[float] = []
    history: list[dict] = []
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        spec.model.load_state_dict(state["model"])
        if spec.ema is not None and state.get("ema") is not None:
            spec.ema.load_state_dict(state["ema"])
        for part in spec.joint:
            if state.get(part.key) is not None:
                part.module.load_state_dict(state[part.key])
                if part.ema is not None:  # a state from before the joint EMA existed starts it from the module
                    part.ema.load_state_dict(state.get(f"{part.key}_ema") or state[part.key])
        spec.optimizer.load_state_dict(state["optimizer"])
        ranks = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        set_rng_state(ranks[min(dist_.rank, len(ranks) - 1)], spec.generator, spec.augment)
        budget = Budget(spec.minutes, spec.max_steps, state["elapsed"], state["step"])
        losses = list(state.get("recent_losses", []))
        history = list(state.get("history", []))
        if spec.resumed is not None:
            spec.resumed(state)

    def save() -> None:
        rng = gather(rng_state(spec.generator, spec.augment), dist_)  # every rank takes part
        if not dist_.main:
            return
        joint = {}
        for part in spec.joint:
            joint[part.key] = part.module.state_dict()
            joint[f"{part.key}_ema"] = part.ema.state_dict() if part.ema is not None else None
        save_atomic({"model": spec.model.state_dict(),
                     **({"ema": spec.ema.state_dict()} if spec.ema is not None else {}),
                     "optimizer": spec.optimizer.state_dict(), **joint, "step": budget.step,
                     "elapsed": budget.elapsed, "rng": rng, "history": history, **spec.extra_state,
                     "recent_losses": losses[-50:]}, checkpoint)

    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    params = [p for group in spec.optimizer.param_groups for p in group["params"]]
    spec.model.train()
    for part in spec.joint:
        part.module.train()
    bar = progress_bar(budget, spec.name, dist_.main)
    last_checkpoint = last_validation = time.perf_counter()
    warmup = max(1, int(spec.warmup_steps))
    while not dist_.agree(budget.done()):
        batch = spec.batch()
        for group in spec.optimizer.param_groups:
            group["lr"] = spec.lr * min(1.0, (budget.step + 1) / warmup)
        with autocast(device):
            loss = spec.loss(*batch)
        spec.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss.float()).backward()
        if spec.grad_clip:
            scaler.unscale_(spec.optimizer)
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        scaler.step(spec.optimizer)
        scaler.update()
        if spec.ema is not None:
            update_ema(spec.ema, spec.model, spec.ema_decay, budget.step)
        for part in spec.joint:
            if part.ema is not None:
                update_ema(part.ema, part.module, spec.ema_decay, budget.step)
        count_step(budget, losses, float(loss.detach()), bar, progress, log_path)
        if (spec.validate and dist_.main
                and time.perf_counter() - last_validation > 60 * spec.validate_every_minutes):
            history.append({"step": budget.step, "elapsed_s": round(budget.elapsed, 1),
                            "train_loss": float(np.mean(losses[-50:])), **spec.validate()})
            log_record(log_path, history[-1])
            bar.write(f"step {budget.step}: " + ", ".join(f"{k} {v}" for k, v in history[-1].items()
                                                          if k not in ("step", "elapsed_s")))
            spec.model.train()
            last_validation = time.perf_counter()
        # all ranks save at the same step (the save gathers their random states), when any clock says so
        if dist_.agree(time.perf_counter() - last_checkpoint > 60 * checkpoint_minutes):
            save()
            last_checkpoint = time.perf_counter()
    bar.close()
    save()
    spec.model.eval()
    return {"steps": budget.step, "minutes": round(budget.elapsed / 60, 2),
            "seconds_per_step": round(budget.elapsed / max(1, budget.step), 4),
            "final_loss": float(np.mean(losses[-50:])) if losses else None, "history": history,
            "budget_spent": budget.spent()}
