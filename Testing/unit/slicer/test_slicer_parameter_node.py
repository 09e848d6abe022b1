"""The module's parameter node and its .ui bindings, checked by Slicer's REAL
parameterNodeWrapper (loaded unchanged from ../shared/slicer-reference).

Slicer refuses some bindings at connectGui time (e.g. a float bound to a ctkSliderWidget
needs a range), and then binds no widget at all; only Slicer's own code can tell.
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import slicer_standins as standins  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
MODULE_FILE = REPO / "UADContrastive" / "UADContrastive.py"
UI_FILE = REPO / "UADContrastive" / "Resources" / "UI" / "UADContrastive.ui"


@pytest.fixture()
def slicer_env(monkeypatch):
    pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    with standins.isolated_modules():
        slicer = pytest.importorskip("slicer")
        scene = slicer.vtkMRMLScene()
        standins.install(monkeypatch, scene)
        module = standins.load_module_file(monkeypatch, MODULE_FILE)
        yield slicer, scene, module


def bound_parameters() -> dict[str, str]:
    """SlicerParameterName -> widget name, straight from the .ui file."""
    bound = {}
    for widget in ET.parse(UI_FILE).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.findtext("string")] = widget.get("name")
    return bound


def connected(slicer_env):
    slicer, scene, module = slicer_env
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    parameters = module.UADContrastiveParameterNode(node)
    ui = standins.child_widget_variables(standins.load_ui(UI_FILE))
    tag = parameters.connectGui(ui)  # raises if Slicer rejects a binding
    return parameters, ui, tag


def test_the_ui_binds_every_slider_and_selector():
    assert {"threshold", "minSizeMm3", "opacity", "inputVolume", "healthyVolume",
            "anomalyMapVolume", "segmentation"} <= set(bound_parameters())


def test_slicer_accepts_the_parameter_node_class(slicer_env):
    _slicer, _scene, module = slicer_env
    wrapper = sys.modules["slicer.parameterNodeWrapper"]
    assert wrapper.isParameterNodeWrapper(module.UADContrastiveParameterNode)
    assert set(bound_parameters()) <= set(module.UADContrastiveParameterNode.allParameters)


def test_every_ui_binding_connects_with_slicers_real_gui_connectors(slicer_env):
    parameters, ui, tag = connected(slicer_env)
    assert len(parameters._parameterGUIs[tag]) == len(bound_parameters())
    for name, widget_name in bound_parameters().items():
        assert parameters._parameterGUIs[tag][name].widget() is getattr(ui, widget_name)


def test_slider_values_round_trip_between_node_and_widgets(slicer_env):
    parameters, ui, _tag = connected(slicer_env)
    # node -> widget
    parameters.threshold = 0.25
    parameters.minSizeMm3 = 120.0
    parameters.opacity = 0.8
    assert (ui.thresholdSlider.value, ui.minSizeSlider.value, ui.opacitySlider.value) == (0.25, 120.0, 0.8)
    # widget -> node
    ui.thresholdSlider.value = 0.5
    ui.minSizeSlider.value = 30
    ui.opacitySlider.value = 0.3
    assert (parameters.threshold, parameters.minSizeMm3, parameters.opacity) == (0.5, 30.0, 0.3)
    # and through the MRML node's own string storage, as a saved scene would hold them
    again = type(parameters)(parameters.parameterNode)
    assert (again.threshold, again.minSizeMm3, again.opacity) == (0.5, 30.0, 0.3)


def test_node_selectors_round_trip(slicer_env):
    _slicer, scene, _module = slicer_env
    parameters, ui, _tag = connected(slicer_env)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "map")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    parameters.inputVolume = volume
    assert ui.inputSelector.currentNode() is volume
    ui.anomalyMapSelector.setCurrentNode(other)
    ui.segmentationSelector.setCurrentNode(segmentation)
    assert parameters.anomalyMapVolume is other and parameters.segmentation is segmentation
    assert ui.segmentationSelector.nodeTypes == ("vtkMRMLSegmentationNode",)


def test_threshold_accepts_any_calibrated_value_and_disconnects(slicer_env):
    """The slider's declared range is only the validator's: the widget applies the
    calibrated range afterwards, and large z-score thresholds must still be storable."""
    parameters, ui, tag = connected(slicer_env)
    ui.thresholdSlider.maximum = 50.0  # what the widget sets from the map and presets
    parameters.threshold = 12.5
    assert ui.thresholdSlider.value == 12.5
    parameters.disconnectGui(tag)
    ui.thresholdSlider.value = 3.0
    assert parameters.threshold == 12.5  # no longer bound
