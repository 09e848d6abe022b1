"""What a training run shares outside the loop (`stage_runner`): the device's mixed precision and
name, checkpoint paths, atomic saves and safe loading, the stop request (SIGTERM, session
limit), random batches of cached slices."""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from ..resources import user_cache_dir
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


def checkpoint_path(config: dict, out_dir: Path, stage: str) -> Path:
    base = Path(config.get("checkpoint_dir") or user_cache_dir() / "training" / Path(out_dir).name)
    return base / f"{stage}.ckpt.pt"


def random_batch(dataset: SliceDataset, generator: torch.Generator, batch_size: int, device):
    """(images, brains) on `device` and the slices' axial positions on the model grid (numpy)."""
    index = torch.randint(len(dataset), (batch_size,), generator=generator).numpy()
    images = torch.from_numpy(dataset.images[index][:, None].copy())
    brains = torch.from_numpy(dataset.brains[index][:, None].astype(np.float32))
    return images.to(device), brains.to(device), dataset.positions[index]
