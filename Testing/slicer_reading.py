"""Reading a .seg.nrrd with slicer-core's real MRML storage node, shared by the tests."""
from __future__ import annotations

import pytest


def read_with_slicer(path):
    """Load a .seg.nrrd the way Slicer does: vtkMRMLSegmentationStorageNode into a segmentation node."""
    slicer = pytest.importorskip("slicer")
    from vtk.util import numpy_support

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, "Slicer's storage node could not read the file"
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    result = []
    for segment in segments:
        labelmap = segment.GetRepresentation("Binary labelmap")
        scalars = labelmap.GetPointData().GetScalars()
        voxels = 0 if scalars is None else int((numpy_support.vtk_to_numpy(scalars) == segment.GetLabelValue()).sum())
        terminology = (segment.GetTerminology() if hasattr(segment, "GetTerminology")
                       else segment.GetTag(segment.GetTerminologyEntryTagName()))
        result.append({"name": segment.GetName(), "voxels": voxels, "color": segment.GetColor(),
                       "terminology": terminology})
    return result
