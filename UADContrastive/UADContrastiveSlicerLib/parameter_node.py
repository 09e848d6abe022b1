"""The module's parameter node: what a saved scene remembers of the panel.

Slicer's parameterNodeWrapper binds a float to a ctkSliderWidget only with a declared
range, and sets the slider to it when connecting. For the threshold this is only the
validator's range: the widget then narrows the slider to the map's calibrated range.
"""
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper

THRESHOLD_LIMIT = 1.0e6
MIN_SIZE_LIMIT_MM3 = 5000.0


@parameterNodeWrapper
class UADContrastiveParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: str = "auto"
    threshold: Annotated[float, WithinRange(0.0, THRESHOLD_LIMIT)] = 0.5
    minSizeMm3: Annotated[float, WithinRange(0.0, MIN_SIZE_LIMIT_MM3)] = 0.0
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    healthyVolume: vtkMRMLScalarVolumeNode
    anomalyMapVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


def clamp_threshold(value: float) -> float:
    return min(max(float(value), 0.0), THRESHOLD_LIMIT)


def clamp_min_size(value: float) -> float:
    return min(max(float(value), 0.0), MIN_SIZE_LIMIT_MM3)
