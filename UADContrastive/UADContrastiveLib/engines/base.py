"""The engine interface: a healthy reconstruction of a model-grid volume."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np
import torch

from ..errors import ModelError
from ..zoo import verify_model

Progress = Optional[Callable[[float], None]]


class Engine(Protocol):
    name: str

    def reconstruct(self, volume: np.ndarray, brain: np.ndarray, progress: Progress = None) -> np.ndarray:
        """Healthy reconstruction of `volume` ((Z, 96, 96) float32, normalised model grid) with
        `brain` ((Z, 96, 96) bool); same shape and intensity scale; slices without brain
        (and voxels outside the brain) are returned as the input."""
        ...

    def reconstruct_with_uncertainty(self, volume: np.ndarray, brain: np.ndarray, samples: int = 4,
                                     progress: Progress = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) over `samples` stochastic reconstructions."""
        ...


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda if available else cpu; otherwise torch.device(device) (checked)."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(None, f"device {device!r} was requested but CUDA is not available.",
                         "Use --device cpu or auto.")
    return resolved


def load_engine(model_dir: Path, device: str = "auto") -> Engine:
    """Verify the model folder's checksums, then build its engine on `device`."""
    model_dir = Path(model_dir)
    card = verify_model(model_dir)
    if card["engine"] == "contrastive_diffusion":
        from .contrastive_diffusion import ContrastiveDiffusionEngine
        return ContrastiveDiffusionEngine.from_folder(model_dir, card, resolve_device(device))
    if card["engine"] == "zscore_atlas":
        from .zscore_atlas import ZScoreAtlasEngine
        return ZScoreAtlasEngine.from_folder(model_dir)
    raise ModelError(model_dir / "model.json", f"names an unknown engine {card['engine']!r}.",
                     "Update UADContrastive, or use a model made for this version.")
