"""`uadc train` for a latent engine (mad_ad, latent_ddpm): stages `autoencoder`, `denoiser` or `all`.

  autoencoder  trains the shared LatentCodec (`training`) and writes autoencoder_final.pt beside
               its checkpoint (or at the recipe's `autoencoder_path`)
  denoiser     loads the finished autoencoder, encodes the cohort's slices once (`latents`), trains
               the engine's latent network (the engine's `denoiser_stage`) and writes the model folder
  all          both; an autoencoder whose budget is spent is reused, not retrained (that is how two
               engines share one: train it once, point both recipes at it)
A recipe naming `autoencoder_state` (the 0.2 recipes: training-state/latent-autoencoder-t1) only
trains its denoiser: the autoencoder trains in that folder under its own recipe
(latent-autoencoder-t1.yaml, which has no denoiser), over as many working periods as it needs.
Single process; one CPU thread unless the recipe's `threads` says otherwise; CUDA when
`--device` asks for it or finds it.
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
from .training import (
    AUTOENCODER_RECIPE,
    FinishedAutoencoder,
    autoencoder_finished,
    autoencoder_path,
    autoencoder_state_dir,
    load_autoencoder,
    train_autoencoder,
)

STAGES = ("autoencoder", "denoiser", "all")
AUTOENCODER_SHARE = 0.3  # share of the progress bar the autoencoder stage takes in `all`


class DenoiserStage(Protocol):
    def __call__(self, config: dict, autoencoder: FinishedAutoencoder, train_set: EncodedSlices,
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


def check_recipe(config: dict, stage: str) -> None:
    """The recipe has the sections `stage` needs, and does not train an autoencoder it shares."""
    shared = config.get("autoencoder_state")
    if shared and stage == "autoencoder":
        raise InputError(None, f"this recipe trains a denoiser on the autoencoder of {shared}, which trains "
                         "under its own recipe.",
                         f"Run: uadc train --resume {shared} --stage autoencoder --data ... --out ... (the first "
                         f"time: --config {AUTOENCODER_RECIPE} --state {shared} instead of --resume).")
    needed = ["denoiser"] if stage in ("denoiser", "all") else []
    if stage == "autoencoder" or (stage == "all" and not shared):
        needed.insert(0, "autoencoder")
    for key in needed:
        if not isinstance(config.get(key), dict):
            advice = ("This recipe trains only the shared autoencoder: run it with --stage autoencoder."
                      if key == "denoiser" and isinstance(config.get("autoencoder"), dict) else
                      "Give --config UADContrastive/Resources/Models/recipes/mad-ad-t1-v0.2.yaml (or "
                      "latent-ddpm-t1-v0.2.yaml, mad-ad-t1.yaml), or a copy of one.")
            raise InputError(None, f"the training recipe has no '{key}' section, which the {stage} stage needs.",
                             advice)


def train_latent_engine(config: dict, data_root, out_dir, stage: str, resume: bool, device: str,
                        progress: Callable[[float], None] | None, denoiser_stage: DenoiserStage,
                        description: str, say=_say) -> dict:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    check_recipe(config, stage)
    out_dir = Path(out_dir)
    ae_file = autoencoder_path(config, out_dir)
    train_ae = stage == "autoencoder" or (stage == "all" and autoencoder_state_dir(config) is None
                                          and not autoencoder_finished(ae_file))
    started = time.perf_counter()
    device_ = resolve_device(device)
    if device_.type == "cpu":
        torch.set_num_threads(int(config.get("threads") or 1))
    # a missing or unfinished autoencoder is refused before the cohort is built
    autoencoder = None if train_ae else load_autoencoder(ae_file, device_)
    cohort = prepare_cohort(config, data_root)
    config = {**config, "cache_dir": str(cohort.cache_dir) if cohort.cache_dir else None}
    train_ids, val_ids = cohort.train_ids, cohort.val_ids
    summary: dict = {"train_subjects": len(train_ids), "validation_subjects": len(val_ids),
                     "autoencoder_path": str(ae_file)}
    ae_progress = (lambda f: progress(AUTOENCODER_SHARE * f)) if progress and stage == "all" else progress
    if train_ae:
        _, ae_summary = train_autoencoder(config, train_ids, val_ids, out_dir, resume, device_, ae_progress)
        summary["autoencoder"] = {k: ae_summary[k] for k in ("steps", "minutes", "complete", "validation_brain_l1")}
        if stage == "autoencoder" or not ae_summary["complete"]:  # a stop before the budget's end ends the run
            return summary
        autoencoder = load_autoencoder(ae_file, device_)
    elif stage == "all":
        say(f"reusing the finished autoencoder {ae_file} (delete it or run --stage autoencoder to retrain)")
    say(f"encoding the cohort's slices with {ae_file} (once per autoencoder and slice cache)")
    train_set, val_set = encoded_cohort(autoencoder, train_ids, val_ids, config,
                                        int(config["denoiser"].get("validation_slices", 256)))
    sub = (lambda f: progress(AUTOENCODER_SHARE + (1 - AUTOENCODER_SHARE) * f)) if progress and stage == "all" else progress
    engine, denoiser_summary = denoiser_stage(config, autoencoder, train_set, val_set, out_dir, resume,
                                              device_, sub)
    validation = validate_engine(engine, val_set)
    training = {"subjects": {"train": train_ids, "validation": val_ids}, "latent_slices": len(train_set),
                "autoencoder": {"file": str(ae_file), "sha256": autoencoder.sha256, **autoencoder.summary},
                "denoiser": denoiser_summary}
    write_latent_model_folder(out_dir, engine, config, cohort.record, training, validation, description,
                              time.perf_counter() - started)
    summary.update({"steps": denoiser_summary["steps"], "minutes": denoiser_summary["minutes"],
                    "validation_brain_mae": validation["brain_mae"], "model_dir": str(out_dir)})
    return summary
