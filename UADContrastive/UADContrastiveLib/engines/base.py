"""The engine contract: what every anomaly-detection method provides to detection,
calibration, residual statistics and evaluation.

An engine turns a normalised model-grid volume into a healthy reconstruction and defines
its residual once; everything downstream (filtering, residual z-scores, thresholds) works
on that residual. An engine's folder under `engines/` holds its networks, its training and
this class; `registry` maps the card's `engine` name to it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Optional

from ..errors import ModelError

if TYPE_CHECKING:
    import numpy as np

    from ..zoo.card import ModelCard

# Called with the fraction done (0..1) of one reconstruction.
ReconstructionProgress = Optional[Callable[[float], None]]


class Engine(ABC):
    """Healthy reconstruction of (Z, Y, X) float32 model-grid volumes, slices along Z."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_folder(cls, model_dir: Path, card: ModelCard, device) -> Engine:
        """Build the engine from a verified model folder (checksums already checked) on `device`
        (a torch.device, or "cpu" for engines without networks)."""

    @abstractmethod
    def reconstruct(self, volume: np.ndarray, brain: np.ndarray,
                    progress: ReconstructionProgress = None) -> np.ndarray:
        """Healthy reconstruction of `volume` (normalised model grid) with `brain` (bool, same
        shape): same shape and intensity scale; voxels outside the brain are the input's."""

    def residual(self, volume: np.ndarray, healthy: np.ndarray) -> np.ndarray:
        """Signed residual, the input of filtering and residual statistics: input - healthy."""
        import numpy as np  # here, not at the top: `uadc` reads the engine registry to build its parser

        return (volume - healthy).astype(np.float32, copy=False)

    def reconstruct_with_uncertainty(self, volume: np.ndarray, brain: np.ndarray, samples: int = 4,
                                     progress: ReconstructionProgress = None) -> tuple[np.ndarray, np.ndarray]:
        """(healthy reconstruction, voxel-wise spread): how unsure the engine is of its reconstruction."""
        raise ModelError(None, f"the {self.name} engine gives no uncertainty map.", "Run without --uncertainty.")


def load_weights(module, path: Path, device) -> None:
    """Load a state-dict-only weight file (weights_only=True: no code runs) into `module`;
    a ModelError naming the file when it does not fit the network the card describes."""
    import pickle

    import torch

    try:
        module.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    except (RuntimeError, KeyError, ValueError, OSError, pickle.UnpicklingError, AttributeError) as error:
        raise ModelError(path, f"could not be loaded as weights for this network ({str(error)[:200]}).",
                         "The model folder may be from another version; reinstall the model.") from None


def inference_autocast(device):
    """Mixed precision for inference on CUDA only (bf16 where supported, else fp16); fp32 on the CPU."""
    import torch

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def resolve_device(device: str = "auto"):
    """"auto" -> cuda if available else cpu; otherwise torch.device(device) (checked)."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(None, f"device {device!r} was requested but CUDA is not available.",
                         "Use --device cpu or auto.")
    return resolved
