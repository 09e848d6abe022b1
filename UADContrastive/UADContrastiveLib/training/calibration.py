"""Fitting a trained model to its healthy cohort, through the detection path: the residual
statistics (on training scans) and the healthy false-positive-rate thresholds (on held-out scans).

Why two parts of the cohort: the thresholds promise a false-positive rate on brains the model
has not seen, so they are measured on the validation scans of the model card's split; the
residual statistics describe where the model normally fails and come from training scans, so
the validation scans stay unseen by everything fitted. Both `uadc train` (after training) and
`uadc calibrate --healthy PATH --residual-stats PATH` run this.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..datasets import Subject, split
from ..errors import InputError
from .cohort import cohort_cache_dir, read_cohort
from .slice_cache import build_cache, load_subject


def _say(message: str) -> None:
    print(f"uadc: {message}", file=sys.stderr, flush=True)


def card_split(card) -> tuple[list[str], list[str]] | None:
    """(training, validation) scan ids recorded in a model card, or None."""
    recorded = card.training.get("split") or card.training.get("subjects")
    if isinstance(recorded, dict) and "train" in recorded:
        return list(recorded["train"]), list(recorded.get("validation") or [])
    return None


def cohort_parts(card, data: Path) -> tuple[list[Subject], list[Subject], str]:
    """(training scans, held-out scans, rule) of the cohort at `data` for this model: the card's
    own split when it names scans of this cohort, else the cohort's split by SPLIT_RULE for the
    IXI layout, else every scan is held out (a healthy set the model never saw)."""
    cohort = read_cohort(data)
    recorded = card_split(card)
    by_id = {s.id: s for s in cohort.subjects}
    if recorded and any(i in by_id for i in recorded[0] + recorded[1]):
        return ([by_id[i] for i in recorded[0] if i in by_id], [by_id[i] for i in recorded[1] if i in by_id],
                "the model card's training/validation split")
    if cohort.kind == "ixi":
        training, validation = split(cohort.subjects)
        return training, validation, "the IXI split (datasets.SPLIT_RULE)"
    return [], list(cohort.subjects), "every scan of the folder (not used in training)"


def fit_residual_stats(detector, data: Path, count: int, progress, say=_say) -> list[str]:
    """Healthy residual statistics of `detector`'s engine on the first `count` training scans of
    the cohort at `data` (through the detection path), stored in the model folder and its card;
    the model's maps become positive residual z-scores. Returns the scan ids used."""
    from ..detection.residual_stats import STATS_FILE, compute_residual_stats, save_residual_stats
    from ..zoo import ModelCard, sha256_file

    training, _, rule = cohort_parts(detector.card, Path(data))
    if not training:
        raise InputError(data, "holds none of the model's training scans, so no residual statistics can be fitted.",
                         "Give the folder the model was trained on (or the IXI folder).")
    cache_dir = cohort_cache_dir(read_cohort(data))
    built = build_cache(training[:count], cache_dir, detector.template, modality=detector.card.modality,
                        progress=lambda done, total, _id: progress("residual stats: preprocess", done / total, _id))
    for problem in built.refused.values():
        say(f"skipped {problem}")
    mean, sd = compute_residual_stats(detector.engine, (load_subject(i, cache_dir) for i in built.ready),
                                      progress=lambda f: progress("residual stats: reconstruct", f))
    path = save_residual_stats(detector.model_dir, mean, sd)
    card = ModelCard.read(detector.model_dir)
    card.files[STATS_FILE] = sha256_file(path)
    card.postprocess.polarity = "positive"
    card.extra["residual_stats"] = {"subjects": built.ready, "rule": f"first training scans of {rule}; |engine "
                                    "residual| mean and sd per model-grid voxel, volumes through the detection path"}
    card.write()
    return built.ready


def detect_maps(detector, scans: list[Subject], progress, stage="detect", say=_say):
    """(scan, anomaly map on the input grid, brain mask, image) for every scan detection accepts;
    the refused ones are reported and skipped."""
    import SimpleITK as sitk

    from ..io import read_mask, read_volume

    results = []
    for index, scan in enumerate(scans):
        def report(_stage, fraction, _message="", done=index, name=str(scan.image)):
            progress(stage, (done + fraction) / len(scans), name)
        try:
            image = read_volume(scan.image)
            mask = read_mask(scan.brain_mask, image) if scan.brain_mask else None
            detection = detector.run(image, mask, threshold=float("inf"), min_size_mm3=0.0, source=scan.image,
                                     progress=report)
        except InputError as error:
            say(f"skipped {error}")
            continue
        results.append((scan, sitk.GetArrayFromImage(detection.anomaly_map),
                        sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0, image))
    return results


def calibrate_healthy(detector, scans: list[Subject], min_size: float, progress, rule: str, say=_say) -> dict:
    """Store in the card the thresholds flagging each HEALTHY_FPR_PRESETS share of healthy brain
    voxels (after filtering and the minimum component size) on `scans`; returns the values."""
    from ..postprocess.calibration import healthy_fpr_thresholds
    from ..postprocess.presets import DEFAULT_PRESET, HEALTHY_FPR_PRESETS
    from ..zoo import ModelCard

    start = time.perf_counter()
    results = detect_maps(detector, scans, progress, say=say)
    if not results:
        raise InputError(None, f"none of the {len(scans)} healthy scans could be used for calibration.")
    found = healthy_fpr_thresholds([(m, b) for _, m, b, _ in results],
                                   fprs=tuple(p.false_positive_rate for p in HEALTHY_FPR_PRESETS),
                                   min_size_mm3=min_size, spacing=results[0][3].GetSpacing())
    card = ModelCard.read(detector.model_dir)
    thresholds = card.thresholds
    for preset in HEALTHY_FPR_PRESETS:
        thresholds.values[preset.key] = float(found[preset.false_positive_rate])
    thresholds.default = DEFAULT_PRESET
    thresholds.min_size_mm3 = min_size
    names = [Path(s.image).name for s, *_ in results]
    if len(set(names)) < len(names):  # e.g. every subject's folder holds a flair.nii.gz
        names = [s.id for s, *_ in results]
    thresholds.notes.update({"healthy_scans": names, "scans_from": rule,
                             "rule": "fraction of healthy brain voxels flagged after filtering and "
                                     f"minimum component size ({min_size:g} mm^3)",
                             "calibrated_s": round(time.perf_counter() - start, 1)})
    card.write()
    return dict(thresholds.values)


def calibrate_on_cohort(model_dir: Path, data: Path, device: str = "auto", residual_scans: int = 20,
                        limit: int | None = None, min_size: float | None = None, progress=None,
                        residual: bool = True, say=_say) -> dict:
    """Residual statistics on the cohort's training scans (unless `residual` is False: the
    z-score atlas's map is a z-score already), then healthy thresholds on its held-out scans:
    what `uadc train` runs after training. Returns the thresholds."""
    from ..detection.detector import Detector
    from ..progress import Progress

    progress = progress or Progress()
    detector = Detector(model_dir, device)
    if residual:
        fit_residual_stats(detector, data, residual_scans, progress, say)
        detector = Detector(model_dir, device)  # reload: the maps are z-scores from now on
    _, held_out, rule = cohort_parts(detector.card, Path(data))
    if not held_out:
        raise InputError(data, "leaves no held-out healthy scan to calibrate on.")
    size = detector.default_min_size() if min_size is None else float(min_size)
    return calibrate_healthy(detector, held_out[:limit], size, progress, rule, say)
