"""Detection results in the MRML scene: load, re-threshold, show, export.

No Qt here: everything runs against a bare vtkMRMLScene (slicer-core) in the tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
from UADContrastiveLib.outputs import names

from . import core, findings_table, geometry, segments
from .nodes import nodes_by_class

REPORT_ATTRIBUTE = "UADContrastive.Report"
# Every output node points at the input it was computed from (a node reference: it
# survives saving and reloading the scene, where node IDs may change) and says what it is.
INPUT_REFERENCE_ROLE = "UADContrastive.input"
OUTPUT_KIND_ATTRIBUTE = "UADContrastive.Output"
OUTPUT_KINDS = ("healthy", "map", "segmentation")
# The DLMUSE atlas carried onto the input grid (`uadc detect` writes it beside the map): a
# hidden labelmap that the map node points at; it names the findings' anatomy.
ANATOMY_LABELS_FILE = "anatomy_labels.nii.gz"
ANATOMY_REFERENCE_ROLE = "UADContrastive.anatomy"
# Digest of the segment's voxels as the module last wrote them: anything else is a hand edit.
SEGMENT_FINGERPRINT_ATTRIBUTE = "UADContrastive.SegmentFingerprint"
FINDINGS_CSV = "findings.csv"
# Slicer ships these colour tables; the first one present in the scene is used.
HEAT_COLOR_NAMES = ("Inferno", "ColdToHotRainbow")
FALLBACK_HEAT_COLOR_NAME = "UADContrastive heat"
# Map values below this fraction of the threshold stay transparent in the overlay, so the
# heat map tints only suspicious tissue instead of darkening the whole brain.
OVERLAY_FLOOR_FRACTION = 0.5


@dataclass
class ThresholdSummary:
    count: int
    total_ml: float
    kept_edited_segment: str | None = None  # name of the segment the user's edits were kept in

    def text(self) -> str:
        if self.count == 0:
            text = ("No anomaly above this threshold. The segment is empty; lower the "
                    "threshold or paint into it with the Segment Editor.")
        else:
            plural = "region" if self.count == 1 else "regions"
            text = f"{self.count} anomalous {plural}, {self.total_ml:.2f} mL in total"
        if self.kept_edited_segment:
            text += f"\nYour edits were kept in the segment '{self.kept_edited_segment}'."
        return text


# ----------------------------------------------------------------------------- nodes
def get_or_create_node(scene, existing, class_name: str, name: str):
    """Reuse `existing` (user's choice of output node) or add a new node named `name`."""
    if existing is not None and existing.GetScene() is scene:
        return existing
    return scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))


def mark_output(node, input_node, kind: str) -> None:
    node.SetAttribute(OUTPUT_KIND_ATTRIBUTE, kind)
    node.SetNodeReferenceID(INPUT_REFERENCE_ROLE, input_node.GetID())


def input_of_output(node):
    """The input volume an output node was computed from (None if not one of ours)."""
    return node.GetNodeReference(INPUT_REFERENCE_ROLE) if node is not None else None


def outputs_for_input(scene, input_node) -> dict:
    """{kind: node} of the outputs last computed from `input_node` (kinds missing if none)."""
    found = {}
    if input_node is None:
        return found
    for class_name in ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"):
        for node in nodes_by_class(scene, class_name):
            kind = node.GetAttribute(OUTPUT_KIND_ATTRIBUTE)
            if kind in OUTPUT_KINDS and input_of_output(node) is input_node:
                found[kind] = node  # scene order: the most recently added one wins
    return found


def reusable_output(scene, node, input_node):
    """`node` if results of `input_node` may be written into it; otherwise None (a new node
    is made): never the input itself, never a node outside the scene, never another input's
    outputs (running on B must not overwrite what was computed from A)."""
    if node is None or node.GetScene() is not scene or node is input_node:
        return None
    owner = input_of_output(node)
    if owner is not None and owner is not input_node:
        return None
    return node


def heat_color_node(scene):
    """Slicer's Inferno (or ColdToHotRainbow) table; a built-in ramp when neither exists."""
    for name in HEAT_COLOR_NAMES:
        table = scene.GetFirstNode(name, "vtkMRMLColorNode")  # as slicer.util.getFirstNodeByClassByName
        if table is not None:
            return table
    existing = scene.GetFirstNodeByName(FALLBACK_HEAT_COLOR_NAME)
    if existing is not None:
        return existing
    table = slicer.vtkMRMLColorTableNode()
    table.SetName(FALLBACK_HEAT_COLOR_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    # black -> red -> yellow -> white: the usual reading of "hotter is more anomalous"
    stops = np.array([[0.0, 0, 0, 0], [0.4, 0.75, 0.1, 0.1], [0.75, 1.0, 0.75, 0.0], [1.0, 1, 1, 1]])
    for index in range(256):
        t = index / 255
        rgb = [np.interp(t, stops[:, 0], stops[:, c]) for c in (1, 2, 3)]
        table.SetColor(index, f"{index}", *rgb, 1.0)
    table.SetHideFromEditors(False)
    scene.AddNode(table)
    return table


def place_beside_input(scene, input_node, nodes) -> None:
    """Put output nodes under the input's parent (its study) in the subject hierarchy."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None:
        return
    input_item = hierarchy.GetItemByDataNode(input_node)
    if not input_item:
        return  # input not in the hierarchy (bare scene): nothing to be consistent with
    parent = hierarchy.GetItemParent(input_item)
    for node in nodes:
        item = hierarchy.GetItemByDataNode(node)
        if item:
            hierarchy.SetItemParent(item, parent)
        else:
            hierarchy.CreateItem(parent, node)


def follow_input_transform(input_node, nodes) -> None:
    """Outputs live on the input's voxel grid, so they must move with the input."""
    transform_id = input_node.GetTransformNodeID()
    for node in nodes:
        node.SetAndObserveTransformNodeID(transform_id)


def style_anomaly_map(map_node, threshold: float) -> None:
    """Heat colours, transparent below a floor, window from the floor to the hottest voxel."""
    scene = map_node.GetScene()
    if map_node.GetDisplayNode() is None:
        map_node.CreateDefaultDisplayNodes()
    display = map_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heat_color_node(scene).GetID())
    top = float(map_node.GetImageData().GetScalarRange()[1])  # cached by VTK until the voxels change
    floor = OVERLAY_FLOOR_FRACTION * float(threshold)
    top = max(top, floor + 1e-6)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(floor, top)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(floor)
    display.SetUpperThreshold(top)


def show_in_slice_views(scene, input_node, map_node, healthy_node, opacity: float,
                        healthy_view_names=()) -> None:
    """Input + heat-map overlay in every slice view, except the healthy-reconstruction views.

    Works on the scene's slice composite nodes, so it needs no layout manager.
    """
    for composite in nodes_by_class(scene, "vtkMRMLSliceCompositeNode"):
        if composite.GetLayoutName() in healthy_view_names and healthy_node is not None:
            composite.SetBackgroundVolumeID(healthy_node.GetID())
            composite.SetForegroundVolumeID(None)
        else:
            composite.SetBackgroundVolumeID(input_node.GetID())
            composite.SetForegroundVolumeID(map_node.GetID() if map_node is not None else None)
            composite.SetForegroundOpacity(float(opacity))
        composite.SetLabelVolumeID(None)


def set_overlay_opacity(scene, map_node, opacity: float) -> None:
    """Opacity of the heat map wherever it is the foreground layer."""
    for composite in nodes_by_class(scene, "vtkMRMLSliceCompositeNode"):
        if map_node is not None and composite.GetForegroundVolumeID() == map_node.GetID():
            composite.SetForegroundOpacity(float(opacity))


def write_input_volume(volume_node, path) -> Path:
    """Save the input's voxels and grid (not its storage node: the scene stays untouched).
    Uncompressed: the file lives seconds in a temp folder, speed matters more than size."""
    import SimpleITK as sitk

    sitk.WriteImage(geometry.sitk_from_volume(volume_node), str(path), False)
    return Path(path)


# ----------------------------------------------------------------------------- results
class AnomalyResults:
    """The three output nodes of one detection, and what can be done with them."""

    def __init__(self, input_node, healthy_node, map_node, segmentation_node):
        self.input_node = input_node
        self.healthy_node = healthy_node
        self.map_node = map_node
        self.segmentation_node = segmentation_node
        self._thresholder_cache = None  # (map modification time, ComponentThresholder, geometry image)
        self._last_threshold = None  # ((thresholder, threshold, min size), mask, count, total mL)

    @property
    def report(self) -> dict:
        text = self.map_node.GetAttribute(REPORT_ATTRIBUTE) if self.map_node else None
        return json.loads(text) if text else {}

    @property
    def anatomy_node(self):
        return self.map_node.GetNodeReference(ANATOMY_REFERENCE_ROLE) if self.map_node else None

    def map_range(self) -> tuple[float, float]:
        values = geometry.array_from_volume(self.map_node)
        return float(values.min()), float(values.max())

    def _thresholder(self):
        """One ComponentThresholder per map content: slider moves reuse its crop and labelling."""
        return self._cached()[1]

    def _cached(self):
        thresholder_class = core.component_thresholder_class()
        stamp = self.map_node.GetImageData().GetMTime()
        if self._thresholder_cache is None or self._thresholder_cache[0] != stamp:
            anomaly_map = geometry.array_from_volume(self.map_node)  # a view: no copy
            self._thresholder_cache = (stamp, thresholder_class(anomaly_map, tuple(self.map_node.GetSpacing())),
                                       _geometry_image(self.map_node))
        return self._thresholder_cache

    def describe(self, mask: np.ndarray) -> list[dict]:
        """The findings (core describe_regions) of a full-grid mask; [] when the core cannot
        name regions yet."""
        describe_regions = core.region_describer()
        if describe_regions is None:
            return []
        anatomy = self.anatomy_node
        return describe_regions(geometry.array_from_volume(self.map_node), mask,
                                geometry.array_from_volume(anatomy) if anatomy is not None else None,
                                self._cached()[2], self.report.get("input_to_template_ras"))

    def findings(self, threshold: float, min_size_mm3: float) -> list[dict]:
        """The findings at these settings (what the map gives, not the maybe edited segment)."""
        mask = self._threshold(threshold, min_size_mm3)[0]
        full = np.zeros(geometry.array_from_volume(self.map_node).shape, np.uint8)
        if mask.box is not None:
            full[mask.box] = mask.box_mask
        return self.describe(full)

    def _threshold(self, threshold: float, min_size_mm3: float):
        """(cropped mask, summary); the last answer is kept: the segment and the findings table
        ask for the same settings one after the other."""
        key = (self._thresholder(), float(threshold), float(min_size_mm3))
        if self._last_threshold is None or self._last_threshold[0] != key:
            mask, count, total_ml = key[0].cropped_mask_and_totals(key[1], key[2])
            self._last_threshold = (key, mask, count, total_ml)
        _, mask, count, total_ml = self._last_threshold
        return mask, ThresholdSummary(count, total_ml)

    def summarize(self, threshold: float, min_size_mm3: float) -> ThresholdSummary:
        """What the map gives at these settings, without touching the (maybe edited) segment."""
        return self._threshold(threshold, min_size_mm3)[1]

    def update_segment_from_map(self, threshold: float, min_size_mm3: float) -> ThresholdSummary:
        """Re-threshold the anomaly map held by the map node and refill the segment. A segment
        edited by hand since the module last wrote it is first kept as a segment of its own."""
        mask, summary = self._threshold(threshold, min_size_mm3)
        if self.segment_was_edited():
            kept_id = segments.keep_edited_segment(self.segmentation_node)
            summary.kept_edited_segment = self.segmentation_node.GetSegmentation().GetSegment(kept_id).GetName()
        segments.set_segment_cropped_mask(self.segmentation_node, mask.box, mask.box_mask,
                                          geometry.ijk_to_ras_of(self.map_node))
        remember_segment_content(self.segmentation_node)
        style_anomaly_map(self.map_node, threshold)
        return summary

    def segment_was_edited(self) -> bool:
        written = self.segmentation_node.GetAttribute(SEGMENT_FINGERPRINT_ATTRIBUTE)
        segmentation = self.segmentation_node.GetSegmentation()
        if not written or segmentation.GetSegment(segments.ANOMALY_SEGMENT_ID) is None:
            return False
        return segments.segment_fingerprint(self.segmentation_node) != written

    def export(self, folder, threshold: float | None = None, min_size_mm3: float | None = None) -> list[Path]:
        """Write seg.nrrd, NIfTI labelmap, map, healthy reconstruction and report to `folder`.

        The labelmap is taken from the segment as it is now, so manual edits are kept.
        Every file is written atomically (temporary name + rename).
        """
        write_text, write_volume, threshold_components = core.write_text, core.write_volume, core.threshold_components
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [write_segmentation_file(self.segmentation_node, folder / names.SEGMENTATION)]
        mask = segments.segment_mask_on_grid(self.segmentation_node, self.map_node)
        mask_image = _sitk_like(mask, self.map_node)
        written.append(write_volume(mask_image, folder / names.ANOMALY_MASK))
        for node, name in ((self.map_node, names.ANOMALY_MAP), (self.healthy_node, names.HEALTHY)):
            if node is not None:
                written.append(write_volume(geometry.sitk_from_volume(node), folder / name))
        _, components = threshold_components(mask.astype(np.float32), 0.5, 0.0, tuple(self.map_node.GetSpacing()))
        report = core.exported_report(self.report, input_name=self.input_node.GetName(), components=components,
                                      threshold=threshold, min_size_mm3=min_size_mm3)
        findings = self.describe(mask)  # of the segment as exported, edits included
        report["findings"] = findings
        written.append(write_text(json.dumps(report, indent=2, default=float), folder / names.REPORT))
        written.append(write_text(findings_table.csv_text(findings), folder / FINDINGS_CSV))
        return written

    def centre_slice_views_on(self, finding: dict) -> None:
        """Centre every slice view on a finding, as Slicer's markups and segment tables jump
        to an item (vtkMRMLSliceNode.JumpAllSlices, centred mode). Findings are in the input's
        own RAS: the input's parent transform, if any, carries them into the views' world."""
        ras = world_point(self.input_node, finding["centroid_ras_mm"])
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.input_node.GetScene(), *ras,
                                              slicer.vtkMRMLSliceNode.CenteredJumpSlice)


def remember_segment_content(segmentation_node) -> None:
    segmentation_node.SetAttribute(SEGMENT_FINGERPRINT_ATTRIBUTE, segments.segment_fingerprint(segmentation_node))


def world_point(node, ras) -> tuple[float, float, float]:
    """`ras` in the node's own coordinates, carried through its parent transforms to world."""
    import vtk

    parent = node.GetParentTransformNode()
    if parent is None:
        return tuple(float(v) for v in ras)
    to_world = vtk.vtkGeneralTransform()
    parent.GetTransformToWorld(to_world)
    return tuple(to_world.TransformPoint([float(v) for v in ras]))


def _geometry_image(volume_node):
    """A SimpleITK image of the volume's size and geometry, voxels all 0: what the findings
    need of the input image (built once per map, not per slider move)."""
    import SimpleITK as sitk

    return _with_geometry(sitk.Image([int(n) for n in volume_node.GetImageData().GetDimensions()], sitk.sitkUInt8),
                          volume_node)


def _sitk_like(array: np.ndarray, volume_node):
    import SimpleITK as sitk

    return _with_geometry(sitk.GetImageFromArray(array), volume_node)


def _with_geometry(image, volume_node):
    spacing, origin, direction = geometry.lps_geometry_from_ijk_to_ras(geometry.ijk_to_ras_of(volume_node))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(direction.ravel()))
    return image


def write_segmentation_file(segmentation_node, path: Path) -> Path:
    """Write a .seg.nrrd on the segmentation's reference grid (not cropped), so other
    tools (slicerio, ITK-SNAP via NRRD) see the input's geometry."""
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    storage.SetCropToMinimumExtent(False)
    storage.SetUseCompression(True)
    if not storage.WriteData(segmentation_node):
        raise OSError(f"could not write {path}")
    return Path(path)


def load_results(scene, input_node, result_dir, healthy_node=None, map_node=None,
                 segmentation_node=None, opacity: float = 0.5) -> AnomalyResults:
    """Read one detection's output folder into nodes beside the input: the given ones when
    they may hold this input's results (reusable_output), new ones otherwise."""
    import SimpleITK as sitk

    result_dir = Path(result_dir)
    report = json.loads((result_dir / names.REPORT).read_text(encoding="utf-8"))
    base = input_node.GetName()
    healthy_node = get_or_create_node(scene, reusable_output(scene, healthy_node, input_node),
                                      "vtkMRMLScalarVolumeNode", f"{base} healthy")
    map_node = get_or_create_node(scene, reusable_output(scene, map_node, input_node),
                                  "vtkMRMLScalarVolumeNode", f"{base} anomaly map")
    segmentation_node = get_or_create_node(scene, reusable_output(scene, segmentation_node, input_node),
                                           "vtkMRMLSegmentationNode", f"{base} anomaly")
    for node, kind in zip((healthy_node, map_node, segmentation_node), OUTPUT_KINDS):
        mark_output(node, input_node, kind)

    geometry.update_volume_from_sitk(healthy_node, sitk.ReadImage(str(result_dir / names.HEALTHY)))
    geometry.update_volume_from_sitk(map_node, sitk.ReadImage(str(result_dir / names.ANOMALY_MAP)))
    map_node.SetAttribute(REPORT_ATTRIBUTE, json.dumps(report, default=float))
    if healthy_node.GetDisplayNode() is None:
        healthy_node.CreateDefaultDisplayNodes()
    _copy_window_level(input_node, healthy_node)

    mask_image = sitk.ReadImage(str(result_dir / names.ANOMALY_MASK))
    if segmentation_node.GetDisplayNode() is None:
        segmentation_node.CreateDefaultDisplayNodes()
    segments.set_reference_geometry(segmentation_node, input_node)
    segments.set_segment_mask(
        segmentation_node, sitk.GetArrayFromImage(mask_image),
        geometry.ijk_to_ras_from_lps(mask_image.GetSpacing(), mask_image.GetOrigin(), mask_image.GetDirection()))
    remember_segment_content(segmentation_node)
    style_anomaly_map(map_node, float(report.get("threshold", {}).get("value", 0.0)))
    anatomy_node = load_anatomy(scene, map_node, result_dir / ANATOMY_LABELS_FILE, f"{base} anatomy")

    outputs = tuple(n for n in (healthy_node, map_node, segmentation_node, anatomy_node) if n is not None)
    follow_input_transform(input_node, outputs)
    place_beside_input(scene, input_node, outputs)
    return AnomalyResults(input_node, healthy_node, map_node, segmentation_node)


def load_anatomy(scene, map_node, path: Path, name: str):
    """The atlas labels on the input grid into the map's (hidden) anatomy labelmap, reused from
    run to run; None, and no reference, when the detection wrote none (an older core)."""
    import SimpleITK as sitk

    node = map_node.GetNodeReference(ANATOMY_REFERENCE_ROLE)
    if not path.is_file():
        map_node.SetNodeReferenceID(ANATOMY_REFERENCE_ROLE, None)
        if node is not None:
            scene.RemoveNode(node)
        return None
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", scene.GenerateUniqueName(name))
        node.SetHideFromEditors(True)  # a helper of the findings, not something to pick or show
        map_node.SetNodeReferenceID(ANATOMY_REFERENCE_ROLE, node.GetID())
    geometry.update_volume_from_sitk(node, sitk.ReadImage(str(path)))
    return node


def _copy_window_level(source_node, target_node) -> None:
    """The healthy reconstruction is compared with the input: show both alike."""
    source, target = source_node.GetDisplayNode(), target_node.GetDisplayNode()
    if source is None or target is None:
        return
    target.SetAutoWindowLevel(False)
    target.SetWindowLevel(source.GetWindow(), source.GetLevel())
