"""No node outlives its scene because of the module: every node query releases the
vtkCollection it gets (UADContrastiveSlicerLib.nodes), measured with slicer-core's REAL MRML
classes through their VTK reference counts."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))
sys.path.insert(0, str(REPO / "Testing" / "integration"))

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
pytest.importorskip("SimpleITK")

from test_slicer_scene import make_image, two_blob_map, write_result_folder  # noqa: E402
from UADContrastiveSlicerLib import geometry, layout, nodes  # noqa: E402
from UADContrastiveSlicerLib import scene as scene_logic  # noqa: E402

SLICE_VIEWS = ("Red", layout.INPUT_VIEW, layout.HEALTHY_VIEW)


def add_input(scene, name: str, seed: int):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    image = make_image(np.random.default_rng(seed).normal(100, 20, two_blob_map().shape).astype(np.float32))
    geometry.update_volume_from_sitk(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def what_the_panel_does(scene, input_node, results, times: int) -> None:
    """What the panel does on every input change, slider tick and view update."""
    for _ in range(times):
        scene_logic.outputs_for_input(scene, input_node)
        scene_logic.set_overlay_opacity(scene, results.map_node, 0.3)
        scene_logic.show_in_slice_views(scene, input_node, results.map_node, results.healthy_node, 0.5,
                                        healthy_view_names=(layout.HEALTHY_VIEW,))
        layout.link_views(scene)
        nodes.nodes_of_exact_class(scene, "vtkMRMLScalarVolumeNode")
        results.update_segment_from_map(1.5, 0.0)


def test_closing_the_scene_leaves_the_output_nodes_only_our_own_references(tmp_path):
    scene = slicer.vtkMRMLScene()
    for name in SLICE_VIEWS:
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
    tracked = []
    for index in range(2):  # two detections, two inputs
        input_node = add_input(scene, f"T1 {index}", index)
        folder = write_result_folder(tmp_path / f"run{index}", two_blob_map(), 0.5)
        results = scene_logic.load_results(scene, input_node, folder)
        outputs = (input_node, results.healthy_node, results.map_node, results.segmentation_node)
        what_the_panel_does(scene, input_node, results, times=1)  # the views now show this input
        held = [node.GetReferenceCount() for node in outputs]
        what_the_panel_does(scene, input_node, results, times=5)
        assert [node.GetReferenceCount() for node in outputs] == held  # no query left a reference behind
        tracked += outputs
        del results

    scene.Clear(0)  # File > Close Scene
    assert all(node.GetScene() is None for node in tracked)
    # Only this test's Python references are left: dropping them frees the nodes.
    assert [node.GetReferenceCount() for node in tracked] == [1] * len(tracked)


def test_the_raw_query_would_leak_what_nodes_by_class_releases():
    """The measurement is not vacuous: the raw collection, left alone, keeps a reference."""
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    before = node.GetReferenceCount()
    assert nodes.nodes_by_class(scene, "vtkMRMLScalarVolumeNode") == [node]
    assert node.GetReferenceCount() == before
    leaked = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    del leaked
    assert node.GetReferenceCount() == before + 1


def test_the_input_candidate_is_what_the_selector_shows():
    """Subclasses (labelmaps) are not offered: the input selector hides child types."""
    scene = slicer.vtkMRMLScene()
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    scalar = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    assert nodes.nodes_of_exact_class(scene, "vtkMRMLScalarVolumeNode") == [scalar]
    assert len(nodes.nodes_by_class(scene, "vtkMRMLScalarVolumeNode")) == 2
