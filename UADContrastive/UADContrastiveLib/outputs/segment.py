"""The "Anomaly" segment, identical in the CLI's .seg.nrrd and in the Slicer scene.

Standard library only: the Slicer module imports it when it loads.
"""
from __future__ import annotations

SEGMENT_ID = "Anomaly"
SEGMENT_NAME = "Anomaly"
# Cyan: the segment is drawn over the black-red-yellow heat map of the anomaly map, and
# over grey MRI; cyan stands out from both (amber vanished into the map's yellow).
SEGMENT_COLOR = (0.1, 0.85, 1.0)
# DICOM/SNOMED CT codes from Slicer's "3D Slicer General Anatomy list" context, so Slicer's
# terminology browser shows the segment as a brain lesion: category "Morphologically Altered
# Structure" (SCT 49755003), type "Lesion" (SCT 52988006), anatomic region "Brain" (SCT
# 12738006): the closest standard concept for a finding that is abnormal but not diagnosed.
TERMINOLOGY = {
    "contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "category": ("SCT", "49755003", "Morphologically Altered Structure"),
    "type": ("SCT", "52988006", "Lesion"),
    "anatomicContextName": "Anatomic codes - DICOM master list",
    "anatomicRegion": ("SCT", "12738006", "Brain"),
}


def terminology_for_slicerio() -> dict:
    """The terminology as slicerio's segment dictionaries hold it (lists of code triples)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in TERMINOLOGY.items()}


def terminology_string() -> str:
    """The terminology as Slicer's vtkSegment stores it: '~'-separated fields, '^'-separated codes
    (context, category, type, type modifier, anatomic context, region, region modifier)."""
    def code(triple=None) -> str:
        return "^".join(triple) if triple else "^^"

    return "~".join((TERMINOLOGY["contextName"], code(TERMINOLOGY["category"]), code(TERMINOLOGY["type"]),
                     code(), TERMINOLOGY["anatomicContextName"], code(TERMINOLOGY["anatomicRegion"]), code()))
