"""Healthy residual statistics: where does the model normally fail to reconstruct?

Even on healthy brains a small, quickly trained reconstruction model leaves large
residuals at sulci, ventricle borders and the cortex. Expressing the engine's residual r
(Engine.residual; x - x_hat for reconstruction engines) as a z-score against healthy
residuals at the same template location,
    z = (|r| - mean_healthy) / sd_healthy,
removes that anatomy-bound background. Measured on the demo volume with the first
CPU-trained checkpoint: AUPRC 0.16 (raw residual) -> 0.89 (residual z-score).

The statistics come from TRAINING subjects (the validation subjects stay unseen for
calibration and evaluation), preprocessed through the detection path (the slice cache),
are smoothed by a 1-voxel Gaussian, and are stored in the model folder as
`residual_stats.npz`, listed with its sha256 in the card (`uadc calibrate --residual-stats`;
the fitting on a cohort is training.calibration.fit_residual_stats).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

STATS_FILE = "residual_stats.npz"
SD_FLOOR = 0.02          # normalised intensity units; keeps rarely-brain voxels from exploding
SMOOTHING_VOXELS = 1.0


def compute_residual_stats(engine, volumes_and_brains, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-wise mean and sd of |engine residual| over healthy model-grid volumes."""
    total = total_sq = count = None
    items = list(volumes_and_brains)
    for index, (volume, brain) in enumerate(items):
        residual = np.abs(engine.residual(volume, engine.reconstruct(volume, brain))).astype(np.float64) * brain
        if total is None:
            total, total_sq, count = np.zeros_like(residual), np.zeros_like(residual), np.zeros_like(residual)
        total += residual
        total_sq += residual**2
        count += brain
        if progress:
            progress((index + 1) / len(items))
    mean = total / np.maximum(count, 1)
    sd = np.sqrt(np.maximum(total_sq / np.maximum(count, 1) - mean**2, 0.0))
    mean = ndimage.gaussian_filter(mean, SMOOTHING_VOXELS)
    sd = np.maximum(ndimage.gaussian_filter(sd, SMOOTHING_VOXELS), SD_FLOOR)
    return mean.astype(np.float32), sd.astype(np.float32)


def save_residual_stats(model_dir: Path, mean: np.ndarray, sd: np.ndarray) -> Path:
    from ..io import atomic_path

    path = Path(model_dir) / STATS_FILE
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, mean=mean.astype(np.float16), sd=sd.astype(np.float16))
    return path


def load_residual_stats(model_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The stored statistics, or None for a model without them (raw residual maps)."""
    path = Path(model_dir) / STATS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return data["mean"].astype(np.float32), data["sd"].astype(np.float32)


def residual_zscore(residual: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(|residual| - healthy mean) / healthy sd; positive where reconstruction fails unusually."""
    mean, sd = stats
    if residual.shape != mean.shape:
        raise ValueError(f"residual {residual.shape} is not on the statistics' grid {mean.shape}")
    return ((np.abs(residual) - mean) / sd).astype(np.float32)
