"""Output file names of one detection (DIR/<stem>/...; the stem is io.volume_stem of the input):
the CLI writes them, the Slicer module reads and exports them. Standard library only (so
`uadc detect` checks its output folders before importing numpy and SimpleITK)."""
from __future__ import annotations

HEALTHY = "healthy.nii.gz"              # healthy reconstruction, float32, input grid
ANOMALY_MAP = "anomaly_map.nii.gz"      # float32 anomaly score, 0 outside the brain
ANOMALY_MASK = "anomaly_mask.nii.gz"    # uint8 labelmap, 1 = anomaly
SEGMENTATION = "anomaly.seg.nrrd"       # the same mask as a Slicer segmentation
BRAIN_MASK = "brain_mask.nii.gz"        # uint8, input grid
ANATOMY = "anatomy_labels.nii.gz"       # uint16 DLMUSE labels of the template's atlas, input grid
UNCERTAINTY = "uncertainty.nii.gz"      # only with --uncertainty
REPORT = "report.json"
OVERVIEW = "overview.png"
