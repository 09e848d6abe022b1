"""The two-view layout against slicer-core's REAL layout and slice-link logic.

vtkMRMLSliceLinkLogic is the C++ class that, in Slicer, copies a linked view's changes to
the other linked views; here it runs on a bare scene, and the user's actions are played
the way Slicer's slice controller does them (interaction flags, then Interacting on).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")

from UADContrastiveSlicerLib import layout  # noqa: E402


@pytest.fixture()
def scene():
    scene = slicer.vtkMRMLScene()
    # As in Slicer: the link logic observes the scene before views are created.
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    link = slicer.vtkMRMLSliceLinkLogic()
    link.SetMRMLApplicationLogic(application)
    link.SetMRMLScene(scene)
    scene._keep = (application, link)  # keep the logics alive with the scene
    layout_logic = slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(scene)
    scene._keep += (layout_logic,)
    layout.register_layout(layout_logic.GetLayoutNode())
    layout_logic.GetLayoutNode().SetViewArrangement(layout.LAYOUT_ID)  # creates the slice nodes
    for name in ("Red", layout.INPUT_VIEW, layout.HEALTHY_VIEW):  # Slicer's slice logics add these
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
        composite.SetLinkedControl(True)
    return scene


def composite(scene, name):
    return next(c for c in layout.composite_nodes_of_views(scene, (name,)))


def pick_background(composite_node, volume):
    """What the slice controller does when the user picks a background volume."""
    composite_node.SetInteractionFlags(slicer.vtkMRMLSliceCompositeNode.BackgroundVolumeFlag)
    composite_node.InteractingOn()
    composite_node.SetBackgroundVolumeID(volume.GetID())
    composite_node.InteractingOff()


def test_layout_registers_once_with_its_own_view_group(scene):
    node = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert node.IsLayoutDescription(layout.LAYOUT_ID)
    layout.register_layout(node)  # idempotent: start-up and every display call it
    for name in (layout.INPUT_VIEW, layout.HEALTHY_VIEW):
        slice_node = scene.GetSingletonNode(name, "vtkMRMLSliceNode")
        assert slice_node is not None and slice_node.GetViewGroup() == layout.VIEW_GROUP
    assert scene.GetSingletonNode("Red", "vtkMRMLSliceNode").GetViewGroup() != layout.VIEW_GROUP


def test_without_the_fix_slicer_links_the_volume_choice(scene):
    """The premise: plain linked control copies a picked volume to the other view."""
    healthy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "healthy")
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    composite(scene, layout.HEALTHY_VIEW).SetBackgroundVolumeID(healthy.GetID())
    pick_background(composite(scene, layout.INPUT_VIEW), other)
    assert composite(scene, layout.HEALTHY_VIEW).GetBackgroundVolumeID() == other.GetID()


def test_linked_views_share_position_but_not_the_volume_choice(scene):
    healthy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "healthy")
    other = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "other")
    composite(scene, layout.HEALTHY_VIEW).SetBackgroundVolumeID(healthy.GetID())
    layout.link_views(scene)

    pick_background(composite(scene, layout.INPUT_VIEW), other)
    assert composite(scene, layout.HEALTHY_VIEW).GetBackgroundVolumeID() == healthy.GetID()
    pick_background(composite(scene, "Red"), other)  # a standard view, other group
    assert composite(scene, layout.HEALTHY_VIEW).GetBackgroundVolumeID() == healthy.GetID()

    # Scrolling one view still moves the other (slice-node link, unaffected).
    input_slice = scene.GetSingletonNode(layout.INPUT_VIEW, "vtkMRMLSliceNode")
    healthy_slice = scene.GetSingletonNode(layout.HEALTHY_VIEW, "vtkMRMLSliceNode")
    input_slice.SetInteractionFlags(slicer.vtkMRMLSliceNode.SliceToRASFlag | slicer.vtkMRMLSliceNode.XYZOriginFlag)
    input_slice.InteractingOn()
    input_slice.SetSliceOffset(12.5)
    input_slice.InteractingOff()
    assert healthy_slice.GetSliceOffset() == pytest.approx(12.5)
    assert composite(scene, layout.INPUT_VIEW).GetLinkedControl()
