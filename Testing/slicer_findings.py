"""A stand-in for the core's findings (UADContrastiveLib.outputs.findings.describe_regions,
written in parallel): the same signature, dicts of the shape the findings contract gives,
computed simply (26-connected regions, centroid through the image's own geometry), so the
Slicer side's table, jump and export can be tested before the real function is merged.
"""
from __future__ import annotations

import numpy as np

CALLS = []  # every call's arguments, for tests that check what the module passes


def describe_regions(anomaly_map, mask, anatomy, image, input_to_template, names=None) -> list[dict]:
    from scipy import ndimage

    CALLS.append({"anomaly_map": anomaly_map, "mask": mask, "anatomy": anatomy, "image": image,
                  "input_to_template": input_to_template})
    assert anomaly_map.shape == mask.shape == tuple(reversed(image.GetSize()))
    labels, count = ndimage.label(mask > 0, structure=np.ones((3, 3, 3)))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    regions = []
    for label in range(1, count + 1):
        inside = labels == label
        kji = np.argwhere(inside).mean(axis=0)
        lps = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji[::-1]])
        ras = [-lps[0], -lps[1], lps[2]]
        structure = int(np.bincount(anatomy[inside]).argmax()) if anatomy is not None else 0
        hemisphere = "right" if ras[0] > 0 else "left"
        location = f"{hemisphere} structure {structure}" if structure else None
        regions.append({
            "id": 0, "volume_ml": float(inside.sum()) * voxel_ml, "voxels": int(inside.sum()),
            "peak_score": float(anomaly_map[inside].max()), "mean_score": float(anomaly_map[inside].mean()),
            "centroid_ras_mm": ras, "centroid_template_mm": None,
            "hemisphere": hemisphere if structure else None, "lobe": None, "location": location,
            "structures": [{"name": f"label {structure}", "share": 1.0}] if structure else [],
            "at_brain_edge": False})
    regions.sort(key=lambda region: -region["voxels"])
    for number, region in enumerate(regions, start=1):
        region["id"] = number
    return regions
