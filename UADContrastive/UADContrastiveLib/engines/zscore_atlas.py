"""Baseline engine: voxel-wise z-score against a healthy atlas on the model grid.

The atlas is the voxel-wise mean and standard deviation of the normalised model-grid
volumes of the IXI training subjects. Its "healthy reconstruction" is the atlas mean;
its residual is (input - mean) / std. It tells us what the diffusion model adds over
knowing only where healthy intensities usually lie.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..zoo import CARD, sha256_file

ATLAS_FILE = "atlas.npz"
STD_FLOOR = 0.05  # normalised units: keeps near-constant voxels (the brain edge) from exploding


class ZScoreAtlasEngine:
    name = "zscore_atlas"

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = mean.astype(np.float32)
        self.std = np.maximum(std.astype(np.float32), STD_FLOOR)

    @classmethod
    def from_folder(cls, model_dir: Path) -> ZScoreAtlasEngine:
        with np.load(Path(model_dir) / ATLAS_FILE, allow_pickle=False) as atlas:
            return cls(atlas["mean"], atlas["std"])

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


def build_atlas(subject_ids: list[str], out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Write the atlas model folder (atlas.npz + model.json) from cached training volumes."""
    from ..io import atomic_path, write_text
    from ..slice_cache import load_subject
    from ..templates import ModelGrid

    start = time.perf_counter()
    total = total_sq = count = None
    for subject_id in subject_ids:
        volume, brain = load_subject(subject_id, cache_dir)
        volume = volume.astype(np.float64)
        if total is None:
            total, total_sq, count = np.zeros_like(volume), np.zeros_like(volume), np.zeros_like(volume)
        total += volume * brain
        total_sq += volume**2 * brain
        count += brain
    present = count >= max(3, 0.5 * len(subject_ids))  # voxels inside most brains
    mean = np.where(present, total / np.maximum(count, 1), 0.0)
    std = np.sqrt(np.maximum(np.where(present, total_sq / np.maximum(count, 1), 0.0) - mean**2, 0.0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / ATLAS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, mean=mean.astype(np.float16), std=std.astype(np.float16))
    card = {
        "name": "zscore-atlas-t1", "version": "0.1.0", "engine": "zscore_atlas", "modality": "T1",
        "method": "voxel-wise z-score against a healthy atlas (baseline)",
        "template": "ixi-head-2mm", "model_grid": ModelGrid().to_dict(),
        "training": {"subjects": sorted(subject_ids), "build_s": round(time.perf_counter() - start, 1)},
        "postprocess": {"polarity": "absolute", "normalise_percentile": 95.0},
        "files": {ATLAS_FILE: sha256_file(out_dir / ATLAS_FILE)},
    }
    write_text(json.dumps(card, indent=2), out_dir / CARD)
    return out_dir
