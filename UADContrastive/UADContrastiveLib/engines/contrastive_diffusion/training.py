"""`uadc train` for the contrastive-diffusion engine (the default engine): the encoder
stage, then the diffusion stage, which writes the model folder. The stages are in
`stages`, the model folder in `model_folder`; the recipe is a `load_config` file such as
Resources/Models/recipes/contrastive-diffusion-t1.yaml.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from ...training.cohort import prepare_cohort
from ...training.distributed import Dist
from ..base import resolve_device
from .model_folder import write_model_folder
from .stages import train_diffusion, train_encoder


def train(config: dict, data_root: str | Path | None, out_dir: str | Path, stage: str = "all",
          resume: bool = False, device: str = "auto", progress: Callable[[float], None] | None = None) -> dict:
    """Train `stage` ("encoder", "diffusion" or "all"); the diffusion stage writes the model folder.

    Returns a summary dict (steps, minutes, validation MAE, model folder)."""
    # On the CPU, near-zero activations outside the brain otherwise fall into slow denormal
    # arithmetic. The setting is process-wide, so it is undone for an in-process caller (tests,
    # Slicer's Python), whose later float arithmetic must not change.
    on_cpu = resolve_device(device).type == "cpu"
    if on_cpu:
        torch.set_flush_denormal(True)
    try:
        return _train(config, data_root, out_dir, stage, resume, device, progress)
    finally:
        if on_cpu:
            torch.set_flush_denormal(False)


def _train(config: dict, data_root: str | Path | None, out_dir: str | Path, stage: str, resume: bool,
           device: str, progress: Callable[[float], None] | None) -> dict:
    if stage not in ("encoder", "diffusion", "all"):
        raise ValueError(f"stage must be encoder, diffusion or all, not {stage!r}")
    started = time.perf_counter()
    dist_ = Dist(resolve_device(device))
    if dist_.device.type == "cpu":
        torch.set_num_threads(int(config.get("threads") or min(2, os.cpu_count() or 1)))
    out_dir = Path(out_dir)
    cohort = prepare_cohort(config, data_root, dist_)
    config = {**config, "cache_dir": str(cohort.cache_dir) if cohort.cache_dir else None}
    train_ids, val_ids = cohort.train_ids, cohort.val_ids
    summary: dict = {"train_subjects": len(train_ids), "validation_subjects": len(val_ids)}
    encoder = None
    conditioned = bool(config["diffusion"].get("conditioned", True))
    if stage in ("encoder", "all") and (conditioned or stage == "encoder"):
        sub = (lambda f: progress(0.25 * f)) if progress and stage == "all" else progress
        encoder = train_encoder(config, train_ids, out_dir, resume, dist_, sub)
        summary["encoder_steps"] = "done"
    if stage in ("diffusion", "all"):
        sub = (lambda f: progress(0.25 + 0.75 * f)) if progress and stage == "all" else progress
        result = train_diffusion(config, train_ids, val_ids, out_dir, resume, dist_, sub,
                                 encoder if stage == "all" else None)
        if dist_.main:
            write_model_folder(out_dir, config, result, train_ids, val_ids, dist_.device,
                               time.perf_counter() - started, cohort=cohort.record)
            summary.update({"steps": result["steps"], "minutes": result["minutes"],
                            "validation_brain_mae": result["validation"]["brain_mae"],
                            "model_dir": str(out_dir)})
    if dist_.enabled and dist.is_initialized():
        dist.destroy_process_group()
    return summary
