"""Fitting the z-score atlas: `uadc train --engine zscore_atlas --data PATH --out MODEL_DIR`.

The training volumes come from the slice cache, which preprocesses every subject through
exactly the path `uadc detect` takes (template registration, template brain mask), so the
atlas describes the volumes detection will compare with it.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...io import atomic_path
from ...training.cohort import prepare_cohort
from ...training.model_folder import write_card
from ...training.slice_cache import load_subject
from .engine import ATLAS_FILE

MIN_SUBJECTS_PER_VOXEL = 3


def build_atlas(subject_ids: list[str], out_dir: Path, cache_dir: Path | None = None,
                name: str | None = None, version: str = "0.1.0", cohort: dict | None = None) -> Path:
    """Write the atlas model folder (atlas.npz + model.json) from cached training volumes.

    The card carries no thresholds: run `uadc calibrate` on the new atlas."""
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
    present = count >= max(MIN_SUBJECTS_PER_VOXEL, 0.5 * len(subject_ids))  # voxels inside most brains
    mean = np.where(present, total / np.maximum(count, 1), 0.0)
    std = np.sqrt(np.maximum(np.where(present, total_sq / np.maximum(count, 1), 0.0) - mean**2, 0.0))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / ATLAS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, mean=mean.astype(np.float16), std=std.astype(np.float16))
    write_card(out_dir, engine="zscore_atlas", config={"name": name, "version": version}, files=[ATLAS_FILE],
               cohort=cohort,
               training={"volumes": "slice cache: the detection path (template registration and brain mask)",
                         "subjects": sorted(subject_ids), "build_s": round(time.perf_counter() - start, 1)},
               run_seconds=time.perf_counter() - start, extra={"method": "voxel-wise z-score against a healthy atlas (baseline)"})
    return out_dir


def train(config: dict, data_root: str | Path | None, out_dir: str | Path, stage: str = "all",
          resume: bool = False, device: str = "auto", progress=None) -> dict:
    """The engine's trainer (see engines.registry): the atlas of the cohort's training scans."""
    cohort = prepare_cohort(config, data_root)
    record = {**cohort.record, "split": cohort.record.get("subjects")}
    build_atlas(cohort.train_ids, Path(out_dir), cohort.cache_dir, name=config.get("name"), cohort=record)
    return {"engine": "zscore_atlas", "train_subjects": len(cohort.train_ids),
            "validation_subjects": len(cohort.val_ids), "model_dir": str(out_dir),
            "cache_dir": str(cohort.cache_dir) if cohort.cache_dir else None}
