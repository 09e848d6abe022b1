"""Writing every output of one detection (names in `names`, report from `report`)."""
from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from ..io import write_text, write_volume
from . import names
from .report import build_report


def write_detection(detection, folder: Path, detector, input_name: str, overview: bool = True) -> dict:
    """Write the files of `detection` (a detection.detector.Detection) into `folder` (a staging
    folder); returns the report."""
    from .overview import write_overview_png
    from .segmentation import write_segmentation

    folder = Path(folder)
    write_volume(detection.healthy, folder / names.HEALTHY)
    write_volume(detection.anomaly_map, folder / names.ANOMALY_MAP)
    write_volume(detection.anomaly_mask, folder / names.ANOMALY_MASK)
    write_segmentation(detection.anomaly_mask, folder / names.SEGMENTATION)
    write_volume(sitk.Cast(detection.preprocessed.brain_mask_input, sitk.sitkUInt8), folder / names.BRAIN_MASK)
    if detection.uncertainty is not None:
        write_volume(detection.uncertainty, folder / names.UNCERTAINTY)
    if overview:
        arrays = detection.model_arrays
        mask_model = sitk.GetArrayFromImage(sitk.Resample(
            detection.anomaly_mask, detection.preprocessed.model_input, detection.preprocessed.transform,
            sitk.sitkNearestNeighbor, 0))
        write_overview_png(arrays["input"], arrays["healthy"], arrays["map"], mask_model, folder / names.OVERVIEW,
                           brain=arrays["brain"])
    preprocessing = detection.preprocessed.summary()
    report = build_report(
        input_name=input_name, model=detector.model_summary(), device=detector.device,
        threshold=detection.threshold, threshold_method=detection.threshold_method,
        thresholds_available=detector.card.thresholds.values, min_size_mm3=detection.min_size_mm3,
        brain_source=detection.preprocessed.brain_source, brain_volume_ml=preprocessing["brain_volume_ml"],
        quality=detection.quality, components=detection.components, preprocessing=preprocessing,
        timings=detection.timings)
    write_text(json.dumps(report, indent=2, default=float), folder / names.REPORT)
    return report
