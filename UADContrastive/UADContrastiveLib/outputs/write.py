"""Writing every output of one detection (names in `names`, report from `report`)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import SimpleITK as sitk

from ..io import write_text, write_volume
from . import names
from .report import build_report


def write_detection(detection, folder: Path, detector, input_name: str, overview: bool = True) -> dict:
    """Write the files of `detection` (a detection.detector.Detection) into `folder` (a staging
    folder); returns the report.

    The volumes and the segmentation are written by a worker thread while this thread draws the
    overview: SimpleITK's writers and zlib release the GIL and matplotlib holds it, so on two
    cores the two overlap (a 1 mm volume's four compressed volumes take about as long as the
    overview). One worker, so the files are written one at a time as before."""
    folder = Path(folder)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uadc-write") as pool:
        written = pool.submit(_write_volumes, detection, folder)
        if overview:
            _write_overview(detection, folder / names.OVERVIEW)
        written.result()  # a failed write raises here, before the report claims success
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


def _write_volumes(detection, folder: Path) -> None:
    from .segmentation import write_segmentation

    write_volume(detection.healthy, folder / names.HEALTHY)
    write_volume(detection.anomaly_map, folder / names.ANOMALY_MAP)
    write_volume(detection.anomaly_mask, folder / names.ANOMALY_MASK)
    write_segmentation(detection.anomaly_mask, folder / names.SEGMENTATION)
    write_volume(sitk.Cast(detection.preprocessed.brain_mask_input, sitk.sitkUInt8), folder / names.BRAIN_MASK)
    if detection.uncertainty is not None:
        write_volume(detection.uncertainty, folder / names.UNCERTAINTY)


def _write_overview(detection, path: Path) -> None:
    from .overview import write_overview_png

    arrays = detection.model_arrays
    mask_model = sitk.GetArrayFromImage(sitk.Resample(
        detection.anomaly_mask, detection.preprocessed.model_input, detection.preprocessed.transform,
        sitk.sitkNearestNeighbor, 0))
    write_overview_png(arrays["input"], arrays["healthy"], arrays["map"], mask_model, path, brain=arrays["brain"])
