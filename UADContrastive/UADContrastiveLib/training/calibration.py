"""Fitting a trained model to healthy scans it has not been trained on, through the detection
path: its healthy statistics and its healthy false-positive-rate thresholds.

Statistics: on the card's statistics cohort (scans held out of training for this,
datasets.STATISTICS_RULE), else on unseen healthy scans the user names. Training scans would
not do: the model reconstructs them better than any new scan, and every new scan would then
look abnormal. Thresholds: on the same scans, each scored leave-one-out (with the statistics
of the others), so they promise a share of flagged voxels on brains neither the model nor the
statistics have seen; or, with `uadc calibrate --healthy`, on a further set of unseen scans.
`uadc train` (after training) and `uadc calibrate --statistics DATA` run this.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..datasets import MIN_HELD_OUT_PERSONS, Subject, split, split_statistics
from ..detection.healthy_statistics import LEGACY_STATISTICS_FILE
from ..errors import InputError
from ..protocol import CALIBRATION_DETECT, STATISTICS_MAPS, STATISTICS_RECONSTRUCT
from .cohort import read_cohort


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


def statistics_scans(card, data: Path) -> tuple[list[Subject], str]:
    """The healthy scans the model's statistics (and thresholds) are fitted on: the card's
    statistics cohort when `data` holds it (scans held out of training for this), else the
    scans of `data` the model has not been trained on (see cohort_parts)."""
    cohort = read_cohort(data)
    by_id = {s.id: s for s in cohort.subjects}
    parts = next((p for p in (card.training.get("split"), card.training.get("subjects"))
                  if isinstance(p, dict) and p.get("statistics")), None)
    if parts and any(i in by_id for i in parts["statistics"]):
        statistics = [by_id[i] for i in parts["statistics"] if i in by_id]
        if len(statistics) >= MIN_HELD_OUT_PERSONS:
            return statistics, "the model card's statistics cohort (held out of training)"
        held_out = statistics + [by_id[i] for i in parts.get("validation") or [] if i in by_id]
        return held_out, "the model card's statistics and validation scans (a small cohort: all held out of training)"
    training, held_out, rule = cohort_parts(card, Path(data))
    if cohort.kind == "ixi":
        # IXI's validation scans are the evaluation's tuning and report heads, never fitted on. A model
        # older than the statistics cohort was trained on every training scan: it gets the cohort the
        # rule holds out now, and its card says they were seen in its training.
        statistics = split_statistics(training)[1]
        return statistics, ("the statistics cohort of the IXI split (datasets.STATISTICS_RULE); this model "
                            "predates it and was trained on these scans too")
    return held_out, f"held-out scans ({rule})"


def each_accepted_scan(scans: list[Subject], progress, stage: str, work, say=_say) -> list:
    """[(scan, work(image, brain mask or None, progress callback), image)] for every scan the
    detection path accepts; the refused ones are reported and skipped."""
    from ..io import read_mask, read_volume

    results = []
    for index, scan in enumerate(scans):
        def report(_stage, fraction, _message="", done=index, name=str(scan.image)):
            progress(stage, (done + fraction) / len(scans), name)
        try:
            image = read_volume(scan.image)
            mask = read_mask(scan.brain_mask, image) if scan.brain_mask else None
            results.append((scan, work(image, mask, report, scan.image), image))
        except InputError as error:
            say(f"skipped {error}")
    return results


def healthy_reconstructions(detector, scans: list[Subject], progress, stage: str, say=_say) -> list:
    """(scan, Reconstruction, image) of every scan the detection path accepts."""
    return each_accepted_scan(scans, progress, stage, lambda image, mask, report, source: detector.reconstruct_scan(
        image, mask, progress=report, source=source), say)


def fit_statistics(detector, scans: list[Subject], min_size: float, progress, rule: str, say=_say) -> dict:
    """Fit the model's healthy statistics on `scans` (healthy, not trained on) and calibrate its
    thresholds on the same scans scored leave-one-out (each scan's map uses the statistics of the
    others, so it is scored as an unseen scan would be). Both are stored in the model folder and
    card; returns the thresholds."""
    from ..detection.healthy_statistics import (
        MIN_SCANS,
        STATISTICS_FILE,
        HealthyStatistics,
        leave_one_out,
    )
    from ..zoo import ModelCard, sha256_file

    start = time.perf_counter()
    found = healthy_reconstructions(detector, scans, progress, STATISTICS_RECONSTRUCT, say)
    needed = MIN_SCANS + 1  # leave-one-out: every scan's statistics come from MIN_SCANS others
    if len(found) < needed:
        raise InputError(None, f"only {len(found)} of {len(scans)} healthy scans the model was not trained on could "
                         f"be used for its statistics (at least {needed} are needed).",
                         "Give more healthy scans the model was not trained on (uadc calibrate --statistics DATA).")
    names = [scan.id for scan, _, _ in found]
    chain = detector.chain
    residuals = [chain.scored_residual(r.volume, r.healthy, r.brain) for _, r, _ in found]
    brains = [r.brain for _, r, _ in found]
    maps = []
    for index, (statistics, (_, rebuilt, _)) in enumerate(zip(leave_one_out(residuals, brains, names), found)):
        progress(STATISTICS_MAPS, index / len(found))
        model_map = chain.filtered(statistics.score(residuals[index]), rebuilt.brain)
        maps.append((chain.on_input_grid(model_map, rebuilt.preprocessed),
                     sitk_array(rebuilt.preprocessed.brain_mask_input) > 0))
    statistics = HealthyStatistics.fit(residuals, brains, names)
    path = statistics.save(detector.model_dir)
    card = ModelCard.read(detector.model_dir)
    card.files.pop(LEGACY_STATISTICS_FILE, None)
    (Path(detector.model_dir) / LEGACY_STATISTICS_FILE).unlink(missing_ok=True)
    card.files[STATISTICS_FILE] = sha256_file(path)
    card.extra.pop("residual_stats", None)
    card.extra["healthy_statistics"] = {
        "scans": names, "rule": rule,
        "what": "signed residual (input - reconstruction) per model-grid voxel: median and one-sided robust "
                "scales (1.4826 x median deviation above / below), smoothed with covering-brain weights, "
                "regional and whole-brain fallback where few brains cover a voxel",
    }
    card.write()
    thresholds = store_thresholds(detector.model_dir, maps, found[0][2].GetSpacing(), min_size,
                                  [scan for scan, _, _ in found],
                                  f"{rule}, each scored leave-one-out (statistics of the other scans)", start)
    return thresholds


def sitk_array(image):
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def detect_maps(detector, scans: list[Subject], progress, stage=CALIBRATION_DETECT, say=_say):
    """(scan, anomaly map on the input grid, brain mask, image) for every scan detection accepts."""
    import SimpleITK as sitk

    def maps(image, mask, report, source):
        detection = detector.run(image, mask, threshold=float("inf"), min_size_mm3=0.0, source=source, progress=report)
        return (sitk.GetArrayFromImage(detection.anomaly_map),
                sitk.GetArrayFromImage(detection.preprocessed.brain_mask_input) > 0)

    return [(scan, anomaly_map, brain, image)
            for scan, (anomaly_map, brain), image in each_accepted_scan(scans, progress, stage, maps, say)]


def calibrate_healthy(detector, scans: list[Subject], min_size: float, progress, rule: str, say=_say) -> dict:
    """Thresholds flagging each HEALTHY_FPR_PRESETS share of healthy brain voxels (after filtering
    and the minimum component size) on `scans`, healthy scans that served neither training nor
    the statistics, scored with the model's own statistics; stored in the card, returned."""
    start = time.perf_counter()
    results = detect_maps(detector, scans, progress, say=say)
    if not results:
        raise InputError(None, f"none of the {len(scans)} healthy scans could be used for calibration.")
    return store_thresholds(detector.model_dir, [(m, b) for _, m, b, _ in results], results[0][3].GetSpacing(),
                            min_size, [s for s, *_ in results], rule, start)


def store_thresholds(model_dir: Path, maps_and_brains: list, spacing, min_size: float, scans: list[Subject],
                     rule: str, start: float) -> dict:
    """Write into the card the thresholds that flag each preset's share of the pooled healthy brain
    voxels of `maps_and_brains` (and at most PER_SCAN_FACTOR times it in any one of them), with how
    they were found and the share each scan gets."""
    from ..postprocess.calibration import flagged_fraction, healthy_fpr_thresholds
    from ..postprocess.presets import DEFAULT_PRESET, HEALTHY_FPR_PRESETS, PER_SCAN_FACTOR
    from ..zoo import ModelCard

    found = healthy_fpr_thresholds(maps_and_brains, fprs=tuple(p.false_positive_rate for p in HEALTHY_FPR_PRESETS),
                                   min_size_mm3=min_size, spacing=spacing)
    card = ModelCard.read(model_dir)
    thresholds = card.thresholds
    for preset in HEALTHY_FPR_PRESETS:
        thresholds.values[preset.key] = float(found[preset.false_positive_rate])
    thresholds.default = DEFAULT_PRESET
    thresholds.min_size_mm3 = min_size
    default = thresholds.values[DEFAULT_PRESET]
    names = [Path(s.image).name for s in scans]
    if len(set(names)) < len(names):  # e.g. every subject's folder holds a flair.nii.gz
        names = [s.id for s in scans]
    thresholds.notes.update({
        "healthy_scans": names, "scans_from": rule,
        "rule": (f"fraction of healthy brain voxels flagged after filtering and minimum component size "
                 f"({min_size:g} mm^3): at most the preset's share pooled, and at most {PER_SCAN_FACTOR:g} x it "
                 f"in any one scan (each scan leave-one-out)"),
        "flagged_per_scan_at_default": [round(flagged_fraction([pair], default, min_size, spacing), 5)
                                        for pair in maps_and_brains],
        "calibrated_s": round(time.perf_counter() - start, 1)})
    card.write()
    return dict(thresholds.values)


def calibrate_on_cohort(model_dir: Path, data: Path, device: str = "auto", limit: int | None = None,
                        min_size: float | None = None, progress=None, say=_say) -> dict:
    """What `uadc train` runs after training: healthy statistics and thresholds on the cohort's
    statistics scans (statistics_scans). Returns the thresholds."""
    from ..detection.detector import Detector
    from ..progress import Progress

    progress = progress or Progress()
    detector = Detector(model_dir, device)
    scans, rule = statistics_scans(detector.card, Path(data))
    if not scans:
        raise InputError(data, "leaves no healthy scan the model was not trained on, for its statistics.")
    size = detector.default_min_size() if min_size is None else float(min_size)
    return fit_statistics(detector, scans[:limit], size, progress, rule, say)
