"""What every engine's training loop shares: wall-clock budgets, the progress bar and log,
checkpoint paths and atomic saves, random-number state, random batches of cached slices."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from ..resources import user_cache_dir
from .augment import Augment
from .slice_cache import SliceDataset


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, device="cpu") -> dict:
    """A training checkpoint read with torch.load(weights_only=True): tensors and plain Python
    containers only, no pickled code run, with the numpy array and dtype globals that the
    random-number states (rng_state) are pickled through allowed. A checkpoint is a file a user
    may be handed to resume from, so it gets the same care as shipped weights."""
    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 renamed np.core to np._core
    allowed = [np.ndarray, np.dtype, numpy_core.multiarray._reconstruct,
               type(np.dtype(np.uint32)), type(np.dtype(np.uint64))]  # the bit generators' key dtypes
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location=device, weights_only=True)


def log_record(path: Path | None, record: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


class StopRequest:
    """Ends every running budget early but cleanly (checkpoint and model folder still written):
    set by SIGTERM/SIGINT during `uadc train`, so a run stopped at the end of a working period
    leaves a state to resume from, and by `session_minutes` (this invocation's own limit)."""

    requested = False
    session_deadline: float | None = None

    @classmethod
    def active(cls) -> bool:
        return cls.requested or (cls.session_deadline is not None and time.perf_counter() >= cls.session_deadline)

    @classmethod
    def limit_session(cls, minutes: float | None) -> None:
        cls.session_deadline = None if minutes is None else time.perf_counter() + 60.0 * float(minutes)


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

    def done(self) -> bool:
        if StopRequest.active():
            return True
        if self.max_steps is not None and self.step >= self.max_steps:
            return True
        return self.seconds is not None and self.elapsed >= self.seconds


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


def checkpoint_path(config: dict, out_dir: Path, stage: str) -> Path:
    base = Path(config.get("checkpoint_dir") or user_cache_dir() / "training" / Path(out_dir).name)
    return base / f"{stage}.ckpt.pt"


def rng_state(generator: torch.Generator, augment: Augment | None) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(),
            "augment": augment.state() if augment is not None else None}


def set_rng_state(state: dict, generator: torch.Generator, augment: Augment | None) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if augment is not None:
        augment.set_state(state["augment"])


def random_batch(dataset: SliceDataset, generator: torch.Generator, batch_size: int, device):
    """(images, brains) on `device` and the slices' axial positions on the model grid (numpy)."""
    index = torch.randint(len(dataset), (batch_size,), generator=generator).numpy()
    images = torch.from_numpy(dataset.images[index][:, None].copy())
    brains = torch.from_numpy(dataset.brains[index][:, None].astype(np.float32))
    return images.to(device), brains.to(device), dataset.positions[index]
