"""Scene logic of the Slicer module against the REAL MRML classes of the slicer-core wheel.

No mocks: every node, segmentation, storage node and subject hierarchy item is the C++
MRML implementation that Slicer itself uses.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
sitk = pytest.importorskip("SimpleITK")

from UADContrastiveSlicerLib import geometry, segments  # noqa: E402
from UADContrastiveSlicerLib import scene as scene_logic  # noqa: E402

SHAPE_KJI = (12, 18, 22)
SPACING = (1.2, 0.9, 2.5)
ORIGIN = (-31.0, 47.5, 12.25)


def oblique_lps_direction() -> np.ndarray:
    """A rotation about two axes with permuted columns (determinant -1): catches any
    mix-up of rows/columns, LPS/RAS signs or axis order."""
    a, b = np.deg2rad(17.0), np.deg2rad(-23.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return (rz @ rx)[:, [2, 0, 1]] * np.array([1, -1, 1])


def make_image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(tuple(oblique_lps_direction().ravel()))
    return image


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture()
def input_node(scene):
    rng = np.random.default_rng(0)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    geometry.update_volume_from_sitk(node, make_image(rng.normal(100, 20, SHAPE_KJI).astype(np.float32)))
    node.CreateDefaultDisplayNodes()
    return node


def two_blob_map() -> np.ndarray:
    """27 voxels at 2.0 and, apart from them, 8 voxels at 1.0; zero elsewhere."""
    anomaly_map = np.zeros(SHAPE_KJI, np.float32)
    anomaly_map[2:5, 2:5, 2:5] = 2.0
    anomaly_map[8:10, 12:14, 15:17] = 1.0
    return anomaly_map


def write_result_folder(folder: Path, anomaly_map: np.ndarray, threshold: float) -> Path:
    """What `uadc detect` writes, minimal: the files load_results reads."""
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(make_image(anomaly_map * 10 + 50), str(folder / "healthy.nii.gz"))
    sitk.WriteImage(make_image(anomaly_map), str(folder / "anomaly_map.nii.gz"))
    sitk.WriteImage(make_image((anomaly_map > threshold).astype(np.uint8)), str(folder / "anomaly_mask.nii.gz"))
    report = {"threshold": {"value": threshold, "method": "calibrated"},
              "thresholds_available": {"fpr_1%": 0.5, "fpr_0.5%": 1.5, "fpr_0.1%": 2.5},
              "min_size_mm3": 0.0, "components": []}
    (folder / "report.json").write_text(json.dumps(report))
    return folder


# ----------------------------------------------------------------------------- geometry
def test_volume_from_sitk_has_exact_ras_geometry(scene):
    values = np.arange(np.prod(SHAPE_KJI), dtype=np.float32).reshape(SHAPE_KJI)
    image = make_image(values)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    geometry.update_volume_from_sitk(node, image)

    assert np.array_equal(geometry.array_from_volume(node), values)
    np.testing.assert_allclose(node.GetSpacing(), SPACING, atol=1e-9)
    # Independent check: the RAS position of some voxels equals ITK's LPS position with
    # the first two coordinates negated.
    ijk_to_ras = geometry.ijk_to_ras_of(node)
    for ijk in [(0, 0, 0), (21, 0, 0), (0, 17, 0), (0, 0, 11), (5, 9, 3)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = ijk_to_ras @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)


def test_volume_round_trip_keeps_voxels_spacing_origin_direction(scene):
    values = np.random.default_rng(1).random(SHAPE_KJI).astype(np.float32)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    geometry.update_volume_from_sitk(node, make_image(values))
    back = geometry.sitk_from_volume(node)

    assert np.array_equal(sitk.GetArrayFromImage(back), values)
    np.testing.assert_allclose(back.GetSpacing(), SPACING, atol=1e-9)
    np.testing.assert_allclose(back.GetOrigin(), ORIGIN, atol=1e-9)
    np.testing.assert_allclose(np.reshape(back.GetDirection(), (3, 3)), oblique_lps_direction(), atol=1e-9)


def test_array_from_volume_is_a_view_not_a_copy(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    geometry.update_volume_from_array(node, np.zeros(SHAPE_KJI, np.float32), np.eye(4))
    geometry.array_from_volume(node)[1, 2, 3] = 7.0
    assert geometry.array_from_volume(node)[1, 2, 3] == 7.0


# ----------------------------------------------------------------------------- segments
def test_segment_from_labelmap_has_name_terminology_and_voxel_count(scene, input_node):
    mask = (two_blob_map() > 0).astype(np.uint8)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segment_id = segments.set_segment_mask(node, mask, geometry.ijk_to_ras_of(input_node))

    segment = node.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "Anomaly"
    assert "Lesion" in segment.GetTerminology()
    np.testing.assert_allclose(segment.GetColor(), segments.ANOMALY_COLOR, atol=1e-6)
    assert segments.segment_voxel_count(node) == 35
    # and the voxels sit where the mask put them on the (oblique) input grid
    assert np.array_equal(segments.segment_mask_on_grid(node, input_node), mask)


def test_reference_geometry_is_the_input_grid(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    converter = slicer.vtkSegmentationConverter
    stored = results.segmentation_node.GetSegmentation().GetConversionParameter(
        converter.GetReferenceImageGeometryParameterName())
    expected = slicer.vtkOrientedImageData()
    expected.SetImageToWorldMatrix(geometry.vtk_matrix(geometry.ijk_to_ras_of(input_node)))
    expected.SetExtent(input_node.GetImageData().GetExtent())
    assert stored == converter.SerializeImageGeometry(expected)


# ----------------------------------------------------------------------------- re-threshold
def test_threshold_updates_change_the_segment_voxel_count(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    node = results.segmentation_node
    assert segments.segment_voxel_count(node) == 35  # the mask file the detection wrote

    voxel_ml = np.prod(SPACING) / 1000.0
    summary = results.update_segment_from_map(0.5, 0.0)
    assert (summary.count, segments.segment_voxel_count(node)) == (2, 35)
    assert summary.total_ml == pytest.approx(35 * voxel_ml)

    summary = results.update_segment_from_map(1.5, 0.0)
    assert (summary.count, segments.segment_voxel_count(node)) == (1, 27)

    # minimum size: the 8-voxel blob (8 * 2.7 mm^3 = 21.6 mm^3) goes, the 27-voxel one stays
    summary = results.update_segment_from_map(0.5, 30.0)
    assert (summary.count, segments.segment_voxel_count(node)) == (1, 27)


def test_empty_result_keeps_an_empty_editable_segment(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    summary = results.update_segment_from_map(5.0, 0.0)
    assert summary.count == 0
    assert "Segment Editor" in summary.text()
    assert results.segmentation_node.GetSegmentation().GetSegment("Anomaly") is not None
    assert segments.segment_voxel_count(results.segmentation_node) == 0
    # and it comes back when the threshold is lowered again
    results.update_segment_from_map(0.5, 0.0)
    assert segments.segment_voxel_count(results.segmentation_node) == 35


# ----------------------------------------------------------------------------- loading
def test_load_results_fills_nodes_with_input_geometry_and_styles_the_map(scene, input_node, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    input_node.SetAndObserveTransformNodeID(transform.GetID())
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))

    assert results.healthy_node.GetName() == "T1 healthy"
    assert results.map_node.GetName() == "T1 anomaly map"
    assert results.segmentation_node.GetName() == "T1 anomaly"
    for node in (results.healthy_node, results.map_node):
        np.testing.assert_allclose(geometry.ijk_to_ras_of(node), geometry.ijk_to_ras_of(input_node), atol=1e-6)
    for node in (results.healthy_node, results.map_node, results.segmentation_node):
        assert node.GetTransformNodeID() == transform.GetID()
    assert np.array_equal(geometry.array_from_volume(results.map_node), two_blob_map())
    assert results.report["thresholds_available"]["fpr_0.5%"] == 1.5

    display = results.map_node.GetDisplayNode()
    color = scene.GetNodeByID(display.GetColorNodeID())
    assert color.GetName() == scene_logic.FALLBACK_HEAT_COLOR_NAME  # bare scene: no Inferno
    assert display.GetApplyThreshold()
    assert display.GetLowerThreshold() == pytest.approx(0.25)


def test_slicer_heat_colour_table_is_preferred_when_present(scene, input_node, tmp_path):
    inferno = slicer.vtkMRMLColorTableNode()
    inferno.SetName("Inferno")
    scene.AddNode(inferno)
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    assert results.map_node.GetDisplayNode().GetColorNodeID() == inferno.GetID()


def test_outputs_are_reused_not_duplicated(scene, input_node, tmp_path):
    folder = write_result_folder(tmp_path / "r", two_blob_map(), 0.5)
    first = scene_logic.load_results(scene, input_node, folder)
    count = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    second = scene_logic.load_results(scene, input_node, folder, first.healthy_node, first.map_node,
                                      first.segmentation_node)
    assert second.map_node.GetID() == first.map_node.GetID()
    assert second.segmentation_node.GetID() == first.segmentation_node.GetID()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count
    assert second.segmentation_node.GetSegmentation().GetNumberOfSegments() == 1


def test_outputs_go_under_the_input_study_in_the_subject_hierarchy(scene, input_node, tmp_path):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Study")
    hierarchy.CreateItem(study, input_node)
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    for node in (results.healthy_node, results.map_node, results.segmentation_node):
        item = hierarchy.GetItemByDataNode(node)
        assert item, node.GetName()
        assert hierarchy.GetItemParent(item) == study


def test_slice_views_show_input_with_overlay_and_healthy_view(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    composites = {}
    for name in ("Red", "Yellow", "UADCHealthy"):
        composite = slicer.vtkMRMLSliceCompositeNode()
        composite.SetLayoutName(name)
        scene.AddNode(composite)
        composites[name] = composite
    scene_logic.show_in_slice_views(scene, input_node, results.map_node, results.healthy_node, 0.4,
                                    healthy_view_names=("UADCHealthy",))
    for name in ("Red", "Yellow"):
        assert composites[name].GetBackgroundVolumeID() == input_node.GetID()
        assert composites[name].GetForegroundVolumeID() == results.map_node.GetID()
        assert composites[name].GetForegroundOpacity() == pytest.approx(0.4)
    assert composites["UADCHealthy"].GetBackgroundVolumeID() == results.healthy_node.GetID()
    assert composites["UADCHealthy"].GetForegroundVolumeID() is None

    scene_logic.set_overlay_opacity(scene, results.map_node, 0.9)
    assert composites["Red"].GetForegroundOpacity() == pytest.approx(0.9)


# ----------------------------------------------------------------------------- export
def test_exported_seg_nrrd_reads_back_with_identical_geometry(scene, input_node, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    results.update_segment_from_map(1.5, 0.0)
    written = results.export(tmp_path / "export", threshold=1.5, min_size_mm3=0.0)
    names = {p.name for p in written}
    assert names == {"anomaly.seg.nrrd", "anomaly_mask.nii.gz", "anomaly_map.nii.gz", "healthy.nii.gz", "report.json",
                     "findings.csv"}

    seg = slicerio.read_segmentation(str(tmp_path / "export" / "anomaly.seg.nrrd"))
    input_image = geometry.sitk_from_volume(input_node)
    expected_ijk_to_lps = np.eye(4)
    expected_ijk_to_lps[:3, :3] = np.reshape(input_image.GetDirection(), (3, 3)) @ np.diag(input_image.GetSpacing())
    expected_ijk_to_lps[:3, 3] = input_image.GetOrigin()
    offset = np.asarray(seg.get("referenceImageExtentOffset", [0, 0, 0]), float)
    ijk_to_lps = np.asarray(seg["ijkToLPS"], float)
    # the file's voxel (0,0,0) is the input's voxel `offset`: uncropped means offset 0
    np.testing.assert_allclose(offset, 0)
    np.testing.assert_allclose(ijk_to_lps, expected_ijk_to_lps, atol=1e-5)
    voxels = np.asarray(seg["voxels"])
    assert voxels.shape == SHAPE_KJI[::-1]  # slicerio/pynrrd index order is (i, j, k)
    expected_mask = (two_blob_map() > 1.5).astype(np.uint8)
    assert np.array_equal(voxels.transpose(2, 1, 0) > 0, expected_mask > 0)
    assert [s["name"] for s in seg["segments"]] == ["Anomaly"]

    labelmap = sitk.ReadImage(str(tmp_path / "export" / "anomaly_mask.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(labelmap), expected_mask)
    np.testing.assert_allclose(labelmap.GetOrigin(), ORIGIN, atol=1e-4)
    np.testing.assert_allclose(np.reshape(labelmap.GetDirection(), (3, 3)), oblique_lps_direction(), atol=1e-4)

    report = json.loads((tmp_path / "export" / "report.json").read_text(encoding="utf-8"))
    assert report["threshold"]["value"] == 1.5
    assert len(report["components"]) == 1 and report["components"][0]["voxels"] == 27
    assert report["input"] == input_node.GetName()  # not the deleted temporary file the detection ran on


def test_cli_seg_nrrd_and_scene_segment_share_colour_and_terminology(scene, input_node, tmp_path):
    """The .seg.nrrd of `uadc detect` and the segment the module makes are the same segment."""
    from slicer_reading import read_with_slicer
    from UADContrastiveLib.outputs.segmentation import write_segmentation

    mask = (two_blob_map() > 0).astype(np.uint8)
    path = write_segmentation(make_image(mask), tmp_path / "anomaly.seg.nrrd")
    [from_cli] = read_with_slicer(path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    in_scene = node.GetSegmentation().GetSegment(segments.set_segment_mask(node, mask, geometry.ijk_to_ras_of(input_node)))
    assert from_cli["name"] == in_scene.GetName() == "Anomaly"
    np.testing.assert_allclose(from_cli["color"], in_scene.GetColor(), atol=1e-6)
    assert from_cli["terminology"] == in_scene.GetTerminology()
    assert "SCT^52988006^Lesion" in from_cli["terminology"]


def test_export_keeps_manual_edits_of_the_segment(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    edited = np.zeros(SHAPE_KJI, np.uint8)
    edited[0, 0, 0:4] = 1  # "painted" by the user, unrelated to the map
    segments.set_segment_mask(results.segmentation_node, edited, geometry.ijk_to_ras_of(input_node))
    results.export(tmp_path / "export")
    labelmap = sitk.ReadImage(str(tmp_path / "export" / "anomaly_mask.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(labelmap), edited)


def test_write_input_volume_does_not_touch_the_scene(scene, input_node, tmp_path):
    nodes_before = scene.GetNumberOfNodes()
    path = scene_logic.write_input_volume(input_node, tmp_path / "input.nrrd")
    assert scene.GetNumberOfNodes() == nodes_before
    assert input_node.GetStorageNode() is None
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image), geometry.array_from_volume(input_node))
    np.testing.assert_allclose(image.GetOrigin(), ORIGIN, atol=1e-5)


# ----------------------------------------------------------------------------- findings
@pytest.fixture()
def findings_core(monkeypatch):
    """The core's describe_regions replaced by the contract-shaped stand-in."""
    sys.path.insert(0, str(REPO / "Testing"))
    import slicer_findings
    from UADContrastiveSlicerLib import core

    slicer_findings.CALLS.clear()
    monkeypatch.setattr(core, "region_describer", lambda: slicer_findings.describe_regions)
    return slicer_findings


def blob_centre_ras(input_node, k, j, i) -> np.ndarray:
    return (geometry.ijk_to_ras_of(input_node) @ np.array([i, j, k, 1.0]))[:3]


def write_anatomy(folder: Path, value: int) -> None:
    sitk.WriteImage(make_image(np.full(SHAPE_KJI, value, np.uint16)), str(folder / scene_logic.ANATOMY_LABELS_FILE))


def test_findings_follow_the_threshold_with_the_inputs_geometry_and_anatomy(scene, input_node, tmp_path,
                                                                            findings_core):
    folder = write_result_folder(tmp_path / "r", two_blob_map(), 0.5)
    write_anatomy(folder, 17)
    results = scene_logic.load_results(scene, input_node, folder)
    anatomy = results.anatomy_node
    assert anatomy.GetHideFromEditors() and anatomy.IsA("vtkMRMLLabelMapVolumeNode")

    low = results.findings(0.5, 0.0)
    assert [f["voxels"] for f in low] == [27, 8] and [f["id"] for f in low] == [1, 2]
    np.testing.assert_allclose(low[0]["centroid_ras_mm"], blob_centre_ras(input_node, 3, 3, 3), atol=1e-6)
    np.testing.assert_allclose(low[0]["volume_ml"], 27 * np.prod(SPACING) / 1000)
    assert low[0]["location"].endswith("structure 17")  # the anatomy labels reached the describer
    call = findings_core.CALLS[-1]
    assert np.array_equal(call["anatomy"], np.full(SHAPE_KJI, 17)) and call["mask"].sum() == 35
    assert [f["voxels"] for f in results.findings(1.5, 0.0)] == [27]
    assert results.findings(2.5, 0.0) == []

    again = scene_logic.load_results(scene, input_node, folder, results.healthy_node, results.map_node,
                                     results.segmentation_node)
    assert again.anatomy_node is anatomy  # reused from run to run


def test_without_the_cores_findings_the_table_is_empty_not_broken(scene, input_node, tmp_path, monkeypatch):
    from UADContrastiveSlicerLib import core

    monkeypatch.setattr(core, "region_describer", lambda: None)
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    assert results.anatomy_node is None and results.findings(0.5, 0.0) == []
    results.export(tmp_path / "export")
    assert (tmp_path / "export" / "findings.csv").read_text().splitlines()[1:] == []


def test_export_writes_the_findings_of_the_segment_as_exported(scene, input_node, tmp_path, findings_core):
    import csv

    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    results.export(tmp_path / "export", threshold=0.5, min_size_mm3=0.0)
    report = json.loads((tmp_path / "export" / "report.json").read_text(encoding="utf-8"))
    assert [f["voxels"] for f in report["findings"]] == [27, 8]
    with open(tmp_path / "export" / "findings.csv", newline="", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert [row["id"] for row in rows] == ["1", "2"]
    centre = blob_centre_ras(input_node, 3, 3, 3)
    np.testing.assert_allclose([float(rows[0][f"centroid_{axis}_mm"]) for axis in "ras"], centre, atol=0.01)
    assert float(rows[1]["peak_score"]) == 1.0


def slice_centre(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([matrix.GetElement(row, 3) for row in range(3)])


def test_a_finding_centres_every_slice_view_on_its_centroid(scene, input_node, tmp_path, findings_core):
    red = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    red.SetOrientationToAxial()
    other = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    other.SetLayoutName("UADCInput")
    other.SetOrientationToSagittal()
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    second = results.findings(0.5, 0.0)[1]
    results.centre_slice_views_on(second)
    expected = blob_centre_ras(input_node, 8.5, 12.5, 15.5)
    for node in (red, other):
        np.testing.assert_allclose(slice_centre(node), expected, atol=1e-6)

    # Under a transform, the outputs move with the input: so does the point the views go to.
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtk_translation(12.0, -4.0, 30.0)
    transform.SetMatrixTransformToParent(shift)
    input_node.SetAndObserveTransformNodeID(transform.GetID())
    results.centre_slice_views_on(second)
    np.testing.assert_allclose(slice_centre(red), expected + [12.0, -4.0, 30.0], atol=1e-6)


def vtk_translation(x, y, z):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for row, value in enumerate((x, y, z)):
        matrix.SetElement(row, 3, value)
    return matrix


def test_moving_the_slider_after_an_edit_keeps_the_edit_in_a_segment_of_its_own(scene, input_node, tmp_path):
    results = scene_logic.load_results(scene, input_node, write_result_folder(tmp_path / "r", two_blob_map(), 0.5))
    summary = results.update_segment_from_map(1.5, 0.0)  # the module's own change: nothing to keep
    assert summary.kept_edited_segment is None and not results.segment_was_edited()
    assert results.segmentation_node.GetSegmentation().GetNumberOfSegments() == 1

    painted = np.zeros(SHAPE_KJI, np.uint8)
    painted[0, 0, 0:4] = 1  # the Segment Editor's work
    segments.set_segment_mask(results.segmentation_node, painted, geometry.ijk_to_ras_of(input_node))
    assert results.segment_was_edited()
    summary = results.update_segment_from_map(0.5, 0.0)
    segmentation = results.segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    kept_id = next(segmentation.GetNthSegmentID(i) for i in range(2)
                   if segmentation.GetNthSegmentID(i) != segments.ANOMALY_SEGMENT_ID)
    assert segmentation.GetSegment(kept_id).GetName() == "Anomaly (edited)"
    assert segments.segment_voxel_count(results.segmentation_node, kept_id) == 4
    assert segments.segment_voxel_count(results.segmentation_node) == 35
    assert "kept in the segment 'Anomaly (edited)'" in summary.text()
    assert not results.segment_was_edited()
    results.update_segment_from_map(1.5, 0.0)  # no new edit: no new copy
    assert segmentation.GetNumberOfSegments() == 2
