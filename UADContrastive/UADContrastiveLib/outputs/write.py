"""Writing every output of one detection (names in `names`, report from `report`)."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import SimpleITK as sitk

from ..io import write_text, write_volume
from . import names
from .report import build_report


def write_detection(detection, folder: Path, input_name: str, overview: bool = True) -> dict:
    """Write the files of `detection` (a detection.detector.Detection) into `folder` (a staging
    folder); returns the report.

    The volumes and the segmentation are written by a worker thread while this thread draws the
    overview: SimpleITK's writers and zlib release the GIL and matplotlib holds it, so on two
    cores the two overlap (a 1 mm volume's four compressed volumes take about as long as the
    overview). One worker, so the files are written one at a time as before."""
    folder = Path(folder)
    start = time.perf_counter()
    anatomy, anatomy_registration, findings, regions, to_template = _findings(detection)
    timings = {**detection.timings, "findings": time.perf_counter() - start}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uadc-write") as pool:
        written = pool.submit(_write_volumes, detection, anatomy, folder)
        if overview:
            _write_overview(detection, regions, folder / names.OVERVIEW)
        written.result()  # a failed write raises here, before the report claims success
    preprocessing = detection.preprocessed.summary()
    report = build_report(
        input_name=input_name, model=detection.model, device=detection.device,
        threshold=detection.threshold, threshold_method=detection.threshold_method,
        thresholds_available=detection.thresholds_available, min_size_mm3=detection.min_size_mm3,
        brain_source=detection.preprocessed.brain_source, brain_volume_ml=preprocessing["brain_volume_ml"],
        quality=detection.quality, components=detection.components, preprocessing=preprocessing,
        timings=timings, findings=findings, input_to_template_ras=to_template,
        anatomy_registration=anatomy_registration)
    write_text(json.dumps(report, indent=2, default=float), folder / names.REPORT)
    return report


def _findings(detection):
    """(the atlas on the input grid, how it was carried there (atlas_transfer), the findings, their
    region ids, input RAS -> template RAS)."""
    from ..preprocess.templates import load_atlas
    from .atlas_transfer import atlas_on_input
    from .findings import find_regions, input_to_template_ras

    atlas, anatomy_names = detection.template.cached("label atlas", load_atlas)
    pre = detection.preprocessed
    anatomy, anatomy_registration = atlas_on_input(pre, detection.template, atlas, detection.anomaly_mask)
    to_template = input_to_template_ras(pre.transform)
    findings, regions = find_regions(
        sitk.GetArrayViewFromImage(detection.anomaly_map), sitk.GetArrayViewFromImage(detection.anomaly_mask),
        sitk.GetArrayViewFromImage(anatomy), detection.anomaly_mask, to_template, anatomy_names)
    return anatomy, anatomy_registration, findings, regions, to_template


def _write_volumes(detection, anatomy: sitk.Image, folder: Path) -> None:
    from .segmentation import write_segmentation

    write_volume(detection.healthy, folder / names.HEALTHY)
    write_volume(detection.anomaly_map, folder / names.ANOMALY_MAP)
    write_volume(detection.anomaly_mask, folder / names.ANOMALY_MASK)
    write_segmentation(detection.anomaly_mask, folder / names.SEGMENTATION)
    write_volume(sitk.Cast(detection.preprocessed.brain_mask_input, sitk.sitkUInt8), folder / names.BRAIN_MASK)
    write_volume(anatomy, folder / names.ANATOMY)
    if detection.uncertainty is not None:
        write_volume(detection.uncertainty, folder / names.UNCERTAINTY)


def _write_overview(detection, regions, path: Path) -> None:
    """The overview of the volumes as written (the input grid), the regions numbered as in the
    findings. The grid is turned to the nearest LPS axes by permuting and flipping them
    (DICOMOrient: no interpolation), so the slices are axial (near-axial for an oblique
    acquisition) whatever the acquisition plane, and the mask drawn is the mask written, voxel
    for voxel."""
    from ..io import image_like
    from .overview import write_overview_png

    mask = detection.anomaly_mask
    ids = image_like(regions.full(sitk.GetArrayViewFromImage(mask).shape), mask)

    def axial(image: sitk.Image):
        return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))

    oriented = sitk.DICOMOrient(mask, "LPS")
    write_overview_png(axial(detection.preprocessed.input_reference), axial(detection.healthy),
                       axial(detection.anomaly_map), sitk.GetArrayFromImage(oriented), path,
                       brain=axial(detection.preprocessed.brain_mask_input), regions=axial(ids),
                       spacing=oriented.GetSpacing()[:2])
