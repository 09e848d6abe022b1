"""`uadc calibrate`: thresholds without lesion labels (healthy FPR), or Dice-optimal with labels.

Healthy rule: run detection on healthy validation scans and store the thresholds that
flag 1 %, 0.5 % and 0.1 % of healthy brain voxels (postprocess.presets) after filtering
and the minimum component size, which is stored with them: detection then uses the same
size. Labelled rule (the paper's): the threshold maximising Dice on a labelled validation set.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="store healthy-FPR (or Dice-optimal) thresholds in a model card")
    p.add_argument("--model", required=True)
    p.add_argument("--healthy", help="folder of healthy scans (or the IXI folder: its validation split is used)")
    p.add_argument("--labelled", help="CSV (id,image,lesion_mask[,brain_mask]) for the Dice-optimal rule")
    p.add_argument("--residual-stats", metavar="IXI_DIR",
                   help="first fit healthy residual statistics on IXI training subjects (maps become z-scores)")
    p.add_argument("--residual-subjects", type=int, default=20, help="training subjects for --residual-stats")
    p.add_argument("--min-size", type=float, default=None, metavar="MM3",
                   help="minimum component size to calibrate for; stored in the card, used by detect")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--limit", type=int, default=None, help="use at most this many scans")


def healthy_scans(folder: Path) -> list[Path]:
    """An IXI-style folder gives its validation split; any other folder, every image in it."""
    from ..datasets import ixi_subjects, split

    folder = Path(folder)
    if (folder / "images").is_dir():
        _, validation = split(ixi_subjects(folder))
        return [s.image for s in validation]
    scans = sorted(p for p in folder.iterdir() if p.name.endswith((".nii.gz", ".nii", ".nrrd", ".mha")))
    if not scans:
        raise InputError(folder, "holds no images (.nii.gz, .nii, .nrrd, .mha).")
    return scans


def detect_maps(detector, scans, progress, stage="detect"):
    """(anomaly map on the input grid, brain mask, image) for every scan."""
    import SimpleITK as sitk

    from ..io import read_volume

    results = []
    for index, scan in enumerate(scans):
        image = read_volume(scan)
        def report(_stage, fraction, _message="", done=index, name=str(scan)):
            progress(stage, (done + fraction) / len(scans), name)
        detection = detector.run(image, threshold=float("inf"), min_size_mm3=0.0, source=scan, progress=report)
        results.append((sitk.GetArrayFromImage(detection.anomaly_map),
                        sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0, image))
    return results


def run(args) -> int:
    import numpy as np
    import SimpleITK as sitk

    from ..detection.detector import Detector
    from ..detection.residual_stats import fit_residual_stats
    from ..io import read_mask
    from ..postprocess.calibration import dice_optimal_threshold, healthy_fpr_thresholds
    from ..postprocess.presets import DEFAULT_PRESET, DICE_OPTIMAL, HEALTHY_FPR_PRESETS
    from ..progress import Progress
    from ..zoo import ModelCard

    if not (args.healthy or args.labelled or args.residual_stats):
        raise InputError(None, "give --residual-stats IXI_DIR, --healthy DIR (healthy FPR rule) "
                         "and/or --labelled CSV (Dice-optimal rule).")
    progress = Progress()
    detector = Detector(args.model, args.device)
    if args.residual_stats:
        fit_residual_stats(detector, Path(args.residual_stats), args.residual_subjects, progress)
        detector = Detector(args.model, args.device)  # reload: the maps are z-scores from now on
    min_size = detector.default_min_size() if args.min_size is None else float(args.min_size)
    card = ModelCard.read(detector.model_dir)
    thresholds = card.thresholds
    start = time.perf_counter()
    if args.healthy:
        scans = healthy_scans(Path(args.healthy))[: args.limit]
        results = detect_maps(detector, scans, progress)
        found = healthy_fpr_thresholds([(m, b) for m, b, _ in results],
                                       fprs=tuple(p.false_positive_rate for p in HEALTHY_FPR_PRESETS),
                                       min_size_mm3=min_size, spacing=results[0][2].GetSpacing())
        for preset in HEALTHY_FPR_PRESETS:
            thresholds.values[preset.key] = float(found[preset.false_positive_rate])
        thresholds.default = DEFAULT_PRESET
        thresholds.notes.update({"healthy_scans": [str(Path(s).name) for s in scans],
                                 "rule": "fraction of healthy brain voxels flagged after filtering and "
                                         f"minimum component size ({min_size:g} mm^3)"})
    if args.labelled:
        from ..evaluation.scoring import read_cases_csv

        cases = read_cases_csv(Path(args.labelled))[: args.limit]
        results = detect_maps(detector, [c["image"] for c in cases], progress, "labelled")
        lesions = [sitk.GetArrayFromImage(read_mask(c["lesion_mask"], image)) > 0
                   for c, (_, _, image) in zip(cases, results)]
        candidates = np.quantile(np.concatenate([m[b] for m, b, _ in results]), np.linspace(0.9, 0.9999, 200))
        thresholds.values[DICE_OPTIMAL] = float(dice_optimal_threshold(
            [m for m, _, _ in results], lesions, [b for _, b, _ in results], candidates)[0])
        thresholds.default = thresholds.default or DICE_OPTIMAL
    thresholds.min_size_mm3 = min_size
    thresholds.notes["calibrated_s"] = round(time.perf_counter() - start, 1)
    card.write()
    progress.close()
    print(json.dumps(thresholds.values, indent=2))
    return 0
