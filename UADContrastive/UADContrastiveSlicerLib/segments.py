"""The "Anomaly" segment: created from a binary mask array, read back, re-filled.

Pure MRML (no Qt): works in the Slicer application and with the slicer-core wheel.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk
from UADContrastiveLib.outputs.segment import (
    SEGMENT_COLOR,
    SEGMENT_ID,
    SEGMENT_NAME,
    terminology_string,
)
from vtk.util import numpy_support

from .geometry import vtk_matrix

# One definition with the CLI's .seg.nrrd (UADContrastiveLib.outputs.segment).
ANOMALY_SEGMENT_ID = SEGMENT_ID
ANOMALY_SEGMENT_NAME = SEGMENT_NAME
ANOMALY_COLOR = SEGMENT_COLOR
ANOMALY_TERMINOLOGY = terminology_string()


def ensure_converter_rules() -> None:
    """Register the labelmap<->surface conversion rules if nobody did.

    The Segmentations module registers them when Slicer starts; a bare MRML scene
    (tests, slicer-core) has none, and segments then cannot hold a labelmap at all.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                       slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def ensure_anomaly_segment(segmentation_node) -> str:
    """Return the id of the anomaly segment, creating it (colour, terminology) if absent."""
    ensure_converter_rules()
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSegment(ANOMALY_SEGMENT_ID) is None:
        segmentation.AddEmptySegment(ANOMALY_SEGMENT_ID, ANOMALY_SEGMENT_NAME, list(ANOMALY_COLOR))
    segment = segmentation.GetSegment(ANOMALY_SEGMENT_ID)
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(ANOMALY_TERMINOLOGY)
    else:  # Slicer < 5.8 stored terminology only as a tag
        segment.SetTag(segment.GetTerminologyEntryTagName(), ANOMALY_TERMINOLOGY)
    return ANOMALY_SEGMENT_ID


def nonzero_box(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """(k0, k1, j0, j1, i0, i1) inclusive bounds of the nonzero voxels; one voxel if none."""
    ks = np.flatnonzero(mask.any(axis=(1, 2)))
    if ks.size == 0:
        return 0, 0, 0, 0, 0, 0
    slab = mask[ks[0]:ks[-1] + 1]
    js = np.flatnonzero(slab.any(axis=(0, 2)))
    is_ = np.flatnonzero(slab[:, js[0]:js[-1] + 1].any(axis=(0, 1)))
    return int(ks[0]), int(ks[-1]), int(js[0]), int(js[-1]), int(is_[0]), int(is_[-1])


def oriented_mask(mask: np.ndarray, ijk_to_ras: np.ndarray, offset_kji: tuple[int, int, int] = (0, 0, 0)):
    """A vtkOrientedImageData (uint8, 0/1) holding `mask` (k, j, i), whose first voxel is voxel
    `offset_kji` of the grid `ijk_to_ras`, cropped to the nonzero voxels (extent offsets keep
    the positions).

    Cropping matters for the slider: the segmentation logic then copies and scans only
    the anomalies' bounding box instead of the whole 256^3 grid on every move.
    """
    k0, k1, j0, j1, i0, i1 = nonzero_box(mask)
    cropped = np.ascontiguousarray(mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1], dtype=np.uint8)
    k, j, i = (int(o) for o in offset_kji)
    image = slicer.vtkOrientedImageData()
    image.SetExtent(i0 + i, i1 + i, j0 + j, j1 + j, k0 + k, k1 + k)
    image.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras))
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(cropped.ravel(), deep=True))
    return image


def set_segment_mask(segmentation_node, mask: np.ndarray, ijk_to_ras: np.ndarray) -> str:
    """Replace the anomaly segment's voxels by `mask`; an all-zero mask leaves it empty
    (but present, so the user can still paint into it with the Segment Editor)."""
    return set_segment_cropped_mask(segmentation_node, tuple(slice(0, n) for n in mask.shape), mask, ijk_to_ras)


def set_segment_cropped_mask(segmentation_node, box, box_mask: np.ndarray | None, ijk_to_ras: np.ndarray) -> str:
    """set_segment_mask for a mask given on a box of the grid (z, y, x slices, as
    ComponentThresholder.cropped_mask_and_totals gives it; box None: nothing flagged): the
    slider then never builds nor scans the full-size mask."""
    segment_id = ensure_anomaly_segment(segmentation_node)
    if box is None:
        box, box_mask = (slice(0, 0),) * 3, np.zeros((1, 1, 1), dtype=np.uint8)
    labelmap = oriented_mask(box_mask, ijk_to_ras, tuple(s.start for s in box))
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        labelmap, segmentation_node, segment_id,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if not ok:
        raise RuntimeError("could not write the anomaly mask into the segmentation")
    return segment_id


def segment_voxel_count(segmentation_node, segment_id: str = ANOMALY_SEGMENT_ID) -> int:
    """How many voxels the segment holds (on its own labelmap grid)."""
    labelmap = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
    if labelmap is None or labelmap.GetPointData().GetScalars() is None:
        return 0
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    return int(np.count_nonzero(values == label_value))


def segment_fingerprint(segmentation_node, segment_id: str = ANOMALY_SEGMENT_ID) -> str:
    """A digest of the segment's voxels (their positions, not the labelmap's storage): it
    changes when the Segment Editor paints or erases, and survives saving the scene."""
    import hashlib

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segmentation_node.GetBinaryLabelmapInternalRepresentation(segment_id)
    digest = hashlib.blake2b(digest_size=16)
    if segment is not None and labelmap is not None and labelmap.GetPointData().GetScalars() is not None:
        values = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()) == segment.GetLabelValue()
        if values.any():
            dims = labelmap.GetDimensions()
            kji = np.argwhere(values.reshape(dims[2], dims[1], dims[0]))
            extent = labelmap.GetExtent()
            digest.update((kji + (extent[4], extent[2], extent[0])).astype(np.int64).tobytes())
    return digest.hexdigest()


def keep_edited_segment(segmentation_node, segment_id: str = ANOMALY_SEGMENT_ID) -> str:
    """Copy the (hand-edited) segment into a segment of its own, named "<name> (edited)", so
    that refilling `segment_id` from the map does not overwrite the edits. Its new id."""
    segmentation = segmentation_node.GetSegmentation()
    edited = slicer.vtkSegment()
    edited.DeepCopy(segmentation.GetSegment(segment_id))
    edited.SetName(f"{ANOMALY_SEGMENT_NAME} (edited)")
    new_id = segmentation.GenerateUniqueSegmentID(f"{segment_id}_edited")
    segmentation.AddSegment(edited, new_id)
    return new_id


def set_reference_geometry(segmentation_node, reference_volume_node) -> None:
    """Make the segmentation share the input's grid (Segment Editor paints on it)."""
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)


def segment_mask_on_grid(segmentation_node, reference_volume_node,
                         segment_id: str = ANOMALY_SEGMENT_ID) -> np.ndarray:
    """The segment resampled to the reference volume's grid, as a (k, j, i) uint8 array.

    Used by export: the user may have edited the segment, and its internal labelmap may
    be cropped to the painted extent.
    """
    merged = slicer.vtkOrientedImageData()
    segment_ids = vtk.vtkStringArray()
    segment_ids.InsertNextValue(segment_id)
    reference_geometry = slicer.vtkOrientedImageData()
    reference_geometry.SetImageToWorldMatrix(_ijk_to_ras_vtk(reference_volume_node))
    reference_geometry.SetExtent(reference_volume_node.GetImageData().GetExtent())
    geometry_string = slicer.vtkSegmentationConverter.SerializeImageGeometry(reference_geometry)
    segmentation_node.GetSegmentation().SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), geometry_string)
    ok = segmentation_node.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, reference_geometry, segment_ids)
    if not ok:
        raise RuntimeError("could not resample the anomaly segment onto the input grid")
    dims = merged.GetDimensions()
    values = numpy_support.vtk_to_numpy(merged.GetPointData().GetScalars())
    return (values.reshape(dims[2], dims[1], dims[0]) > 0).astype(np.uint8)


def _ijk_to_ras_vtk(volume_node) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix
