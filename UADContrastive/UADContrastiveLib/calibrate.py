"""`uadc calibrate`: thresholds without lesion labels (healthy FPR), or Dice-optimal with labels.

Healthy rule: run detection on healthy validation scans and store the thresholds that
flag 1 %, 0.5 % and 0.1 % of healthy brain voxels (after filtering and minimum
component size). Labelled rule (the paper's): the threshold maximising Dice on a
labelled validation set.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .datasets import ixi_subjects, split
from .errors import InputError
from .io import read_mask, read_volume, write_text
from .progress import Progress

FPRS = {"fpr_1%": 0.01, "fpr_0.5%": 0.005, "fpr_0.1%": 0.001}
DEFAULT_KEY = "fpr_0.5%"


def healthy_scans(folder: Path) -> list[Path]:
    """An IXI-style folder gives its validation split; any other folder, every image in it."""
    folder = Path(folder)
    if (folder / "images").is_dir():
        _, validation = split(ixi_subjects(folder))
        return [s.image for s in validation]
    scans = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")))
    if not scans:
        raise InputError(folder, "holds no images (.nii.gz, .nii, .nrrd, .mha).")
    return scans


def detect_maps(detector, scans, progress, stage="detect"):
    """(anomaly map on the input grid, brain mask, spacing) for every scan."""
    results = []
    for index, scan in enumerate(scans):
        image = read_volume(scan)
        def report(_stage, fraction, _message="", done=index, name=str(scan)):
            progress(stage, (done + fraction) / len(scans), name)
        detection = detector.run(image, threshold=float("inf"), min_size_mm3=0.0, source=scan, progress=report)
        results.append((sitk.GetArrayFromImage(detection.anomaly_map),
                        sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0, image))
    return results


def update_card(model_dir: Path, **entries) -> dict:
    """Replace top-level entries of the model card (atomically); returns the new card."""
    card_path = Path(model_dir) / "model.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.update(entries)
    write_text(json.dumps(card, indent=2), card_path)
    return card


def fit_residual_stats(detector, data: Path, count: int, progress) -> None:
    """Healthy residual statistics from `count` IXI TRAINING subjects, stored in the model folder."""
    from .residual_stats import STATS_FILE, compute_residual_stats, save_residual_stats
    from .slice_cache import build_cache, load_subject
    from .zoo import sha256_file

    training, _ = split(ixi_subjects(Path(data)))
    subjects = training[:count]
    ids = build_cache(subjects, template=detector.template,
                      progress=lambda done, total, _id: progress("residual stats: preprocess", done / total, _id))
    mean, sd = compute_residual_stats(detector.engine, (load_subject(i) for i in ids),
                                      progress=lambda f: progress("residual stats: reconstruct", f))
    path = save_residual_stats(detector.model_dir, mean, sd)
    card = detector.card
    files = {**card["files"], STATS_FILE: sha256_file(path)}
    postprocess = {**card.get("postprocess", {}), "polarity": "positive"}
    note = {"subjects": ids, "rule": "first IXI training subjects by id; |x - x_hat| mean and sd per model-grid voxel"}
    update_card(detector.model_dir, files=files, postprocess=postprocess, residual_stats=note)


def run_calibrate(args) -> int:
    from .detect import Detector
    from .postprocess import dice_optimal_threshold, healthy_fpr_thresholds

    if not (args.healthy or args.labelled or args.residual_stats):
        raise InputError(None, "give --residual-stats IXI_DIR, --healthy DIR (healthy FPR rule) "
                         "and/or --labelled CSV (Dice-optimal rule).")
    progress = Progress()
    detector = Detector(args.model, args.device)
    if args.residual_stats:
        fit_residual_stats(detector, Path(args.residual_stats), args.residual_subjects, progress)
        detector = Detector(args.model, args.device)  # reload: the maps are z-scores from now on
    min_size = detector.default_min_size() if args.min_size is None else args.min_size
    card_thresholds = dict(detector.card.get("thresholds") or {})
    values = dict(card_thresholds.get("values", {}))
    start = time.perf_counter()
    if args.healthy:
        scans = healthy_scans(Path(args.healthy))[: args.limit]
        results = detect_maps(detector, scans, progress)
        spacing = results[0][2].GetSpacing()
        found = healthy_fpr_thresholds([(m, b) for m, b, _ in results], fprs=tuple(FPRS.values()),
                                       min_size_mm3=min_size, spacing=spacing)
        for key, fpr in FPRS.items():
            values[key] = float(found[fpr])
        card_thresholds.update({"default": DEFAULT_KEY, "healthy_scans": [str(Path(s).name) for s in scans],
                                "rule": "fraction of healthy brain voxels flagged after filtering and "
                                        f"minimum component size ({min_size:g} mm^3)"})
    if args.labelled:
        from .evaluate import read_cases_csv

        cases = read_cases_csv(Path(args.labelled))[: args.limit]
        results = detect_maps(detector, [c["image"] for c in cases], progress, "labelled")
        lesions = [sitk.GetArrayFromImage(read_mask(c["lesion_mask"], image)) > 0
                   for c, (_, _, image) in zip(cases, results)]
        candidates = np.quantile(np.concatenate([m[b] for m, b, _ in results]), np.linspace(0.9, 0.9999, 200))
        values["dice_optimal"] = float(dice_optimal_threshold([m for m, _, _ in results], lesions,
                                                              [b for _, b, _ in results], candidates)[0])
        card_thresholds.setdefault("default", "dice_optimal")
    card_thresholds.update({"values": values, "min_size_mm3": min_size,
                            "calibrated_s": round(time.perf_counter() - start, 1)})
    update_card(detector.model_dir, thresholds=card_thresholds)
    progress.close()
    print(json.dumps(card_thresholds["values"], indent=2))
    return 0
