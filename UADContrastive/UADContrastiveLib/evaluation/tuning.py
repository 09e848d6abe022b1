"""Choices on the tuning part, fast: every figure on the model grid, reconstructions cached.

    python -m UADContrastiveLib.evaluation.tuning --model DIR [--variants NAME ...] [--out FILE.json]

The tuning heads (IXI validation, tuning part) come from the slice cache, exactly as the
detection path put them on the model grid; each tuning donor's real lesion shape is carried to
the model grid (donor -> template registration, as the protocol does) and given a T1
appearance in a few tuning heads (real_lesions). Because the healthy head is known voxel for
voxel, the harness also measures how much of a lesion's contrast the reconstruction removes.
The statistics cohort (datasets.STATISTICS_RULE) gives the healthy statistics. Each variant
runs the one map chain (detection.anomaly_map) with other post-processing or scoring settings;
reconstructions depend only on the model and are cached per model. Figures:
  healthy_mae        mean |x - reconstruction| in the brain of the healthy tuning heads
  contrast_removed   1 - mean(reconstruction - healthy) / mean(lesioned - healthy) in the lesions
  auprc, best_dice   per lesioned case over brain voxels, then the mean
  healthy_flagged    share of the healthy tuning heads' brain over the threshold calibrated
                     (0.5 %) on the statistics cohort, each head scored with the statistics
                     of the other folds (5 folds), mean and max per head
Only the tuning part is read; the report part is never touched here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import ixi_subjects, split, split_statistics
from ..detection.anomaly_map import AnomalyMapChain
from ..detection.healthy_statistics import HealthyStatistics
from ..postprocess.calibration import healthy_fpr_thresholds
from ..postprocess.filtering import PostprocessConfig
from ..resources import user_cache_dir
from ..training import slice_cache
from .metrics import auprc, best_dice
from .real_lesions import (
    Donor,
    donor_part,
    donors,
    healthy_parts,
    lesion_appearance,
    place_lesion,
    template_transform,
)

TARGET = 0.005
HEADS_PER_DONOR = 3
FOLDS = 5  # held-out statistics for the thresholds: 5 folds cost 5 fits instead of one per head
VARIANTS = {
    "default": {},
    "median5": {"size": 5},
    "median3": {"filter": "median", "size": 3},
    "positive": {"polarity": "positive"},
    "negative": {"polarity": "negative"},
    "erosion2": {"erosion_mm": 2.0},
    "per_scan_p95": {"normalise_percentile": 95.0},
    "smooth2": {"residual_sigma_mm": 2.0},
    "smooth3": {"residual_sigma_mm": 3.0},
    "smooth4": {"residual_sigma_mm": 4.0},
    "smooth3_negative": {"residual_sigma_mm": 3.0, "polarity": "negative"},
}


@dataclass
class GridCase:
    id: str
    volume: np.ndarray
    brain: np.ndarray
    lesion: np.ndarray | None = None
    healthy_head: np.ndarray | None = None


def tuning_cases(data: Path, template, seed: int = 0) -> tuple[list[GridCase], list[GridCase]]:
    """(healthy tuning heads, lesioned tuning heads) on the model grid."""
    import SimpleITK as sitk

    from ..io import read_volume

    heads = [GridCase(s.id, *slice_cache.load_subject(s.id)) for s in healthy_parts(data / "ixi_t1")["tuning"]
             if slice_cache.cache_path(s.id).exists()]
    reference = template.grid.reference()
    identity = sitk.Transform(3, sitk.sitkIdentity)
    lesioned = []
    part_donors: list[Donor] = [d for d in donors(data / "lesions") if donor_part(d) == "tuning"]
    for d_index, donor in enumerate(part_donors):
        labels = read_volume(donor.lesion, allow_constant=True)
        if donor.kind != "brats":
            labels = sitk.Cast(labels > 0, sitk.sitkUInt8)
        on_grid = place_lesion(sitk.Cast(labels, sitk.sitkUInt8), template_transform(donor.image, donor.brain_mask,
                                                                                      template), reference, identity)
        for k in range(HEADS_PER_DONOR):
            head = heads[(d_index * HEADS_PER_DONOR + k) % len(heads)]
            inside = np.where(head.brain, on_grid, 0)
            if (inside > 0).sum() < 0.8 * max(1, (on_grid > 0).sum()) or not (inside > 0).any():
                continue
            rng = np.random.default_rng(seed + 100 * d_index + k)
            volume = lesion_appearance(head.volume, head.brain, inside, donor.kind, rng)
            lesioned.append(GridCase(f"{head.id}+{donor.kind}-{donor.id}", volume, head.brain, inside > 0,
                                     head.volume))
    return heads, lesioned


def statistics_heads(data: Path) -> list[GridCase]:
    training, validation = split(ixi_subjects(data / "ixi_t1"))
    cohort = split_statistics(training)[1]
    return [GridCase(s.id, *slice_cache.load_subject(s.id)) for s in cohort if slice_cache.cache_path(s.id).exists()]


def reconstruction_key(model_dir: Path) -> str:
    """What a reconstruction depends on: the engine, its network, its inference settings and its
    weights (not statistics, thresholds or evaluation fields, which recalibration rewrites)."""
    card = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    weights = {name: digest for name, digest in card.get("files", {}).items() if name.endswith(".pt")}
    key = {k: card.get(k) for k in ("engine", "network", "inference", "model_grid", "preprocessing")}
    return hashlib.sha256(json.dumps({**key, "weights": weights}, sort_keys=True).encode()).hexdigest()[:16]


def reconstructions(engine, model_dir: Path, cases: list[GridCase], log=print) -> dict[str, np.ndarray]:
    """The engine's reconstruction of every case, cached per model (its weights' checksums)."""
    digest = reconstruction_key(Path(model_dir))
    cache = user_cache_dir() / "tuning" / digest
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for index, case in enumerate(cases):
        path = cache / f"{case.id}.npy"
        if not path.exists():
            start = time.perf_counter()
            np.save(path, engine.reconstruct(case.volume, case.brain).astype(np.float32))
            log(f"reconstructed {index + 1}/{len(cases)} {case.id} ({time.perf_counter() - start:.1f} s)")
        out[case.id] = np.load(path)
    return out


def held_out_statistics(residuals: list, brains: list) -> list[HealthyStatistics]:
    """Per statistics head, statistics fitted without its fold (FOLDS folds, heads in turn)."""
    folds = [list(range(k, len(residuals), FOLDS)) for k in range(min(FOLDS, len(residuals)))]
    per_head: dict[int, HealthyStatistics] = {}
    for fold in folds:
        rest = [i for i in range(len(residuals)) if i not in fold]
        fitted = HealthyStatistics.fit([residuals[i] for i in rest], [brains[i] for i in rest])
        per_head.update({i: fitted for i in fold})
    return [per_head[i] for i in range(len(residuals))]


def score_variant(engine, settings: dict, stats_cases, recon, heads, lesioned, spacing) -> dict:
    chain = AnomalyMapChain(engine.residual, None, PostprocessConfig(**settings), spacing)
    residuals = [chain.scored_residual(c.volume, recon[c.id], c.brain) for c in stats_cases]
    brains = [c.brain for c in stats_cases]
    chain.statistics = HealthyStatistics.fit(residuals, brains)
    held_out = [(chain.filtered(s.score(residuals[i]), brains[i]), brains[i])
                for i, s in enumerate(held_out_statistics(residuals, brains))]
    threshold = healthy_fpr_thresholds(held_out, (TARGET,), 0.0, spacing)[TARGET]
    flagged = [float((chain.model_map(h.volume, recon[h.id], h.brain)[h.brain] > threshold).mean()) for h in heads]
    rows = []
    for case in lesioned:
        anomaly = chain.model_map(case.volume, recon[case.id], case.brain)
        scores, labels = anomaly[case.brain], case.lesion[case.brain]
        rows.append({"id": case.id, "auprc": auprc(scores, labels), "best_dice": best_dice(scores, labels)[0],
                     "dice": float(2 * ((scores > threshold) & labels).sum() / max(1, (scores > threshold).sum()
                                                                                   + labels.sum()))})
    return {"threshold": threshold, "auprc": float(np.mean([r["auprc"] for r in rows])),
            "best_dice": float(np.mean([r["best_dice"] for r in rows])),
            "dice": float(np.mean([r["dice"] for r in rows])),
            "healthy_flagged_mean": float(np.mean(flagged)), "healthy_flagged_max": float(np.max(flagged)),
            "kinds": {kind: float(np.mean([r["auprc"] for r in rows if f"+{kind}-" in r["id"]]))
                      for kind in ("brats", "wml") if any(f"+{kind}-" in r["id"] for r in rows)},
            "cases": rows}


def reconstruction_figures(recon, heads, lesioned) -> dict:
    mae = [float(np.abs(h.volume - recon[h.id])[h.brain].mean()) for h in heads]
    removed = []
    for case in lesioned:
        inserted = float((case.volume - case.healthy_head)[case.lesion].mean())
        kept = float((recon[case.id] - case.healthy_head)[case.lesion].mean())
        if abs(inserted) > 1e-3:
            removed.append(1.0 - kept / inserted)
    return {"healthy_mae": float(np.mean(mae)), "contrast_removed": float(np.mean(removed))}


def evaluate_model(model_dir: Path, data: Path, variants: list[str], device: str = "cpu", log=print) -> dict:
    from ..engines.registry import load_engine
    from ..preprocess.templates import load_template
    from ..zoo import ModelCard

    template = load_template()
    engine = load_engine(Path(model_dir), device)
    heads, lesioned = tuning_cases(Path(data), template)
    stats_cases = statistics_heads(Path(data))
    recon = reconstructions(engine, Path(model_dir), stats_cases + heads + lesioned, log)
    card = ModelCard.read(model_dir)
    result = {"model": f"{card.name} {card.version}", "folder": str(model_dir), "cases": len(lesioned),
              "healthy_heads": len(heads), "statistics_heads": len(stats_cases),
              **reconstruction_figures(recon, heads, lesioned), "variants": {}}
    for name in variants:
        result["variants"][name] = score_variant(engine, VARIANTS[name], stats_cases, recon, heads, lesioned,
                                                 template.grid.spacing)
        v = result["variants"][name]
        log(f"{result['model']} {name}: AUPRC {v['auprc']:.3f}, Dice {v['dice']:.3f} (best {v['best_dice']:.3f}), "
            f"healthy flagged "
            f"{100 * v['healthy_flagged_mean']:.2f} % (max {100 * v['healthy_flagged_max']:.2f} %) {v['kinds']}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--variants", nargs="*", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = [evaluate_model(m, args.data, args.variants, log=lambda m: print(m, flush=True)) for m in args.model]
    for r in results:
        print(f"{r['model']}: healthy MAE {r['healthy_mae']:.4f}, lesion contrast removed "
              f"{100 * r['contrast_removed']:.1f} %, {r['cases']} lesioned cases")
    if args.out:
        for r in results:
            for v in r["variants"].values():
                v.pop("cases")
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
