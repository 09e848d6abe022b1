"""Baseline engine: voxel-wise z-score against a healthy atlas on the model grid.

The atlas is the voxel-wise mean and standard deviation of the normalised model-grid
volumes of the IXI training subjects (fitted by `training`). Its "healthy reconstruction" is the atlas mean;
its residual is (input - mean) / std. It tells us what the diffusion model adds over
knowing only where healthy intensities usually lie.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ModelError
from ..base import Engine

ATLAS_FILE = "atlas.npz"
STD_FLOOR = 0.05  # normalised units: keeps near-constant voxels (the brain edge) from exploding


class ZScoreAtlasEngine(Engine):
    name = "zscore_atlas"

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = mean.astype(np.float32)
        self.std = np.maximum(std.astype(np.float32), STD_FLOOR)

    @classmethod
    def from_folder(cls, model_dir: Path, card, device=None) -> ZScoreAtlasEngine:
        with np.load(Path(model_dir) / ATLAS_FILE, allow_pickle=False) as atlas:
            engine = cls(atlas["mean"], atlas["std"])
        grid_shape = tuple(card.model_grid.size[::-1])
        if engine.mean.shape != grid_shape:
            raise ModelError(Path(model_dir) / ATLAS_FILE, f"holds an atlas of shape {engine.mean.shape}, but the "
                             f"card's model_grid is {grid_shape} (z, y, x).", "Rebuild the model folder.")
        return engine

    def _check(self, volume: np.ndarray) -> None:
        if volume.shape != self.mean.shape:
            raise ValueError(f"volume {volume.shape} is not on the atlas grid {self.mean.shape}")

    def reconstruct(self, volume, brain, progress=None) -> np.ndarray:
        self._check(volume)
        healthy = np.where(brain, self.mean, volume).astype(np.float32)
        if progress:
            progress(1.0)
        return healthy

    def reconstruct_with_uncertainty(self, volume, brain, samples: int = 4, progress=None):
        return self.reconstruct(volume, brain, progress), np.where(brain, self.std, 0).astype(np.float32)

    def residual(self, volume: np.ndarray, healthy: np.ndarray) -> np.ndarray:
        return ((volume - healthy) / self.std).astype(np.float32)
