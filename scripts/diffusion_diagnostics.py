"""Why a diffusion model does or does not reconstruct *this* brain (issue 11's diagnostics).

    python scripts/diffusion_diagnostics.py --model DIR [--subjects ID ...] [--out FILE.json]

On model-grid volumes of held-out subjects (the slice cache, built through the detection
path; default: the tuning part of the validation split), prints and writes:
  healthy_mae         mean |x - reconstruction| inside the brain, with the model's own settings,
                      beside the population-mean image's MAE (what an average brain scores);
  swap                mean |recon(x | own latent) - recon(x | latent of another subject's slice
                      at the same level)| inside the brain: how much the latent is about
                      *this* subject (0 = the condition carries nothing subject-specific);
  contrast_removed    per single timestep t, the share of a synthetic lesion's contrast the
                      reconstruction removes (1 = fully healed, 0 = copied back), on lesions
                      from `corruptions.insert_synthetic_lesions` (a diagnostic only: never a
                      reported detection figure).
Everything is seeded; the same model gives the same figures.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
from UADContrastiveLib.datasets import is_validation
from UADContrastiveLib.engines.registry import load_engine
from UADContrastiveLib.evaluation.real_lesions import validation_part
from UADContrastiveLib.training import slice_cache
from UADContrastiveLib.training.corruptions import insert_synthetic_lesions

TIMESTEPS = (250, 500, 750, 900)


def brain_slices(subject_id: str, min_fraction: float = 0.15):
    volume, brain = slice_cache.load_subject(subject_id)
    keep = slice_cache.brain_slices(brain, min_fraction)
    return volume, brain, keep


def reconstruct(engine, images: np.ndarray, condition: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    slices = torch.from_numpy(images[:, None].copy())
    cond = None if condition is None else torch.from_numpy(condition[:, None].copy())
    out = engine.reconstruct_slices(slices, torch.Generator().manual_seed(seed), condition=cond)
    return out[:, 0].numpy()


def population_mean(training_ids: list[str]) -> np.ndarray:
    total = None
    for subject_id in training_ids:
        volume, _ = slice_cache.load_subject(subject_id)
        total = volume.astype(np.float64) if total is None else total + volume
    return (total / len(training_ids)).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--subjects", nargs="*", help="validation subject ids (default: the tuning part)")
    parser.add_argument("--slices", type=int, default=12, help="evenly spread brain slices per subject")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cached = sorted(p.stem for p in slice_cache.default_cache_dir().glob("IXI*.npz"))
    subjects = args.subjects or [s for s in cached if is_validation(s) and validation_part(s) == "tuning"]
    training = [s for s in cached if not is_validation(s)]
    engine = load_engine(args.model, "cpu")
    mean_image = population_mean(training)
    result = {"model": str(args.model), "inference": engine.inference, "subjects": subjects}

    picked = {}
    for subject_id in subjects:
        volume, brain, keep = brain_slices(subject_id)
        index = keep[np.linspace(0, len(keep) - 1, args.slices).round().astype(int)]
        picked[subject_id] = (volume, brain, index)

    maes, mean_maes, swaps = [], [], []
    for k, (volume, brain, index) in enumerate(picked.values()):
        recon = reconstruct(engine, volume[index])
        inside = brain[index]
        maes.append(float(np.abs(volume[index] - recon)[inside].mean()))
        mean_maes.append(float(np.abs(volume[index] - mean_image[index])[inside].mean()))
        other_volume, _, _ = picked[subjects[(k + 1) % len(subjects)]]
        swapped = reconstruct(engine, volume[index], other_volume[index])
        swaps.append(float(np.abs(recon - swapped)[inside].mean()))
    result["healthy_mae"] = {"model": round(float(np.mean(maes)), 4),
                             "population_mean_image": round(float(np.mean(mean_maes)), 4),
                             "per_subject": [round(v, 4) for v in maes]}
    result["swap"] = {"mean": round(float(np.mean(swaps)), 4), "per_subject": [round(v, 4) for v in swaps]}

    removed = {}
    for t in TIMESTEPS:
        single = copy.copy(engine)
        single.inference = {**engine.inference, "timesteps": [t]}
        shares = []
        for n, (volume, brain, _) in enumerate(picked.values()):
            rng = np.random.default_rng(n)
            lesioned, lesion = insert_synthetic_lesions(volume, brain, rng, count=2)
            rows = np.flatnonzero(lesion.reshape(len(lesion), -1).any(1))
            if len(rows) == 0:
                continue
            recon = reconstruct(single, lesioned[rows])
            contrast = lesioned[rows] - volume[rows]
            strong = lesion[rows] & (np.abs(contrast) > 0.1)
            shares.append(float(np.mean((lesioned[rows] - recon)[strong] / contrast[strong])))
        removed[str(t)] = round(float(np.mean(shares)), 3)
    result["contrast_removed"] = removed
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
