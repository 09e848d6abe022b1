"""Output file names of one detection (DIR/<stem>/...): the CLI writes them, the Slicer
module reads and exports them. Standard library only (so `uadc detect` checks its output
folders before importing numpy and SimpleITK)."""
from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".seg.nrrd", ".dcm")

HEALTHY = "healthy.nii.gz"              # healthy reconstruction, float32, input grid
ANOMALY_MAP = "anomaly_map.nii.gz"      # float32 anomaly score, 0 outside the brain
ANOMALY_MASK = "anomaly_mask.nii.gz"    # uint8 labelmap, 1 = anomaly
SEGMENTATION = "anomaly.seg.nrrd"       # the same mask as a Slicer segmentation
BRAIN_MASK = "brain_mask.nii.gz"        # uint8, input grid
ANATOMY = "anatomy_labels.nii.gz"       # uint16 DLMUSE labels of the template's atlas, input grid
UNCERTAINTY = "uncertainty.nii.gz"      # only with --uncertainty
REPORT = "report.json"
OVERVIEW = "overview.png"


def volume_stem(path: str | Path) -> str:
    """Name without image extension (`t1` for `t1.nii.gz`); a DICOM folder's own name: the
    <stem> of an input's output folder."""
    path = Path(path)
    name = path.name
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem if path.is_file() else name
