"""`uadc train` for a latent engine (mad_ad, latent_ddpm): stages `autoencoder`, `denoiser` or `all`.

  autoencoder  trains the shared LatentCodec (`training`) and writes autoencoder_final.pt at
               the recipe's `autoencoder_path`
  denoiser     loads that autoencoder, encodes the cohort's slices once (`latents`), trains the
               engine's latent network (the engine's `denoiser_stage`) and writes the model folder
  all          both; an autoencoder already finished at `autoencoder_path` is reused, not retrained
               (that is how two engines share one: train it once, point both recipes at it)
Single process; one CPU thread unless the recipe's `threads` says otherwise (the machines this
was sized for have two cores, one of them busy); CUDA when `--device` asks for it or finds it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import torch

from ...errors import InputError
from ...training.cohort import prepare_cohort
from ..base import resolve_device
from .engine import LatentEngine
from .folder import write_latent_model_folder
from .latents import EncodedSlices, encoded_cohort
from .network import LatentCodec
from .training import autoencoder_path, load_autoencoder, train_autoencoder

STAGES = ("autoencoder", "denoiser", "all")
AUTOENCODER_SHARE = 0.3  # share of the progress bar the autoencoder stage takes in `all`


class DenoiserStage(Protocol):
    def __call__(self, config: dict, codec: LatentCodec, autoencoder_network: dict, train_set: EncodedSlices,
                 val_set: EncodedSlices, out_dir: Path, resume: bool, device: torch.device,
                 progress: Callable[[float], None] | None) -> tuple[LatentEngine, dict]: ...


def _say(message: str) -> None:
    print(f"uadc: {message}", file=sys.stderr, flush=True)


def validate_engine(engine: LatentEngine, val_set: EncodedSlices) -> dict:
    """Healthy validation slices through the engine: mean |input - healthy| in the brain (what a
    healthy brain leaves in the map before residual statistics) and the time per slice."""
    images, brains = val_set.images, val_set.brains
    if images is None or len(images) == 0:
        return {"brain_mae": None, "slices": 0}
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    total = count = 0.0
    batch = int(engine.inference.get("batch_size", 32))
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            x, b = images[s:s + batch].to(engine.device), brains[s:s + batch].to(engine.device)
            healthy = torch.where(b > 0, engine.heal_slices(x, b, generator).float(), x)
            total += float((healthy - x).abs()[b > 0].sum())
            count += float((b > 0).sum())
    seconds = time.perf_counter() - start
    return {"brain_mae": round(total / max(count, 1.0), 5), "slices": len(images),
            "seconds_per_slice": round(seconds / len(images), 4),
            "what": "mean |input - healthy reconstruction| inside the brain on evenly spread healthy validation "
                    "slices (normalised intensities): the healthy background of the map"}


def train_latent_engine(config: dict, data_root, out_dir, stage: str, resume: bool, device: str,
                        progress: Callable[[float], None] | None, denoiser_stage: DenoiserStage,
                        description: str, say=_say) -> dict:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    for key in ("autoencoder", "denoiser"):
        if not isinstance(config.get(key), dict):
            raise InputError(None, f"the training recipe has no '{key}' section, which a latent engine needs.",
                             "Give --config UADContrastive/Resources/Models/recipes/mad-ad-t1.yaml (or "
                             "latent-ddpm-t1.yaml), or a copy of one.")
    started = time.perf_counter()
    device_ = resolve_device(device)
    if device_.type == "cpu":
        torch.set_num_threads(int(config.get("threads") or 1))
    out_dir = Path(out_dir)
    cohort = prepare_cohort(config, data_root)
    config = {**config, "cache_dir": str(cohort.cache_dir) if cohort.cache_dir else None}
    train_ids, val_ids = cohort.train_ids, cohort.val_ids
    summary: dict = {"train_subjects": len(train_ids), "validation_subjects": len(val_ids)}
    ae_file = autoencoder_path(config, out_dir)
    train_ae = stage == "autoencoder" or (stage == "all" and not ae_file.is_file())
    ae_progress = (lambda f: progress(AUTOENCODER_SHARE * f)) if progress and stage == "all" else progress
    if train_ae:
        _, ae_summary = train_autoencoder(config, train_ids, val_ids, out_dir, resume, device_, ae_progress)
        summary["autoencoder"] = {k: ae_summary[k] for k in ("steps", "minutes", "validation_brain_l1")}
    elif stage == "all":
        say(f"reusing the finished autoencoder {ae_file} (delete it or run --stage autoencoder to retrain)")
    summary["autoencoder_path"] = str(ae_file)
    if stage == "autoencoder":
        return summary
    codec, ae_network, ae_summary = load_autoencoder(ae_file, device_)
    say(f"encoding the cohort's slices with {ae_file.name} (once per autoencoder)")
    train_set, val_set = encoded_cohort(codec, ae_file, train_ids, val_ids, config,
                                        int(config["denoiser"].get("validation_slices", 256)))
    sub = (lambda f: progress(AUTOENCODER_SHARE + (1 - AUTOENCODER_SHARE) * f)) if progress and stage == "all" else progress
    engine, denoiser_summary = denoiser_stage(config, codec, ae_network, train_set, val_set, out_dir, resume,
                                              device_, sub)
    validation = validate_engine(engine, val_set)
    training = {"subjects": {"train": train_ids, "validation": val_ids}, "latent_slices": len(train_set),
                "autoencoder": {"file": str(ae_file), **ae_summary}, "denoiser": denoiser_summary}
    write_latent_model_folder(out_dir, engine, config, cohort.record, training, validation, description,
                              time.perf_counter() - started)
    summary.update({"steps": denoiser_summary["steps"], "minutes": denoiser_summary["minutes"],
                    "validation_brain_mae": validation["brain_mae"], "model_dir": str(out_dir)})
    return summary
