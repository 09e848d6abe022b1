"""Side-by-side linked slice views: input + heat map on the left, healthy reconstruction
on the right.

The layout is registered when Slicer starts (not only when results are shown): a saved
scene stores the layout's number, and reopening it before this module was used would
otherwise fail with an unknown layout.

The two views are the module's own (not Red), in a view group of their own: Slicer's
slice-link logic only broadcasts between views of the same group, so linking the standard
views elsewhere never replaces what these two show, and vice versa. Within the group the
views are linked for position, orientation and zoom only: each composite node's
interaction-flags modifier masks out the volume choices, so picking a volume in one view
(with the link on) does not replace the healthy reconstruction in the other.

Everything except the *_in_app functions is plain MRML and tested with slicer-core.
"""
from __future__ import annotations

import slicer

from . import scene as scene_logic
from .nodes import nodes_by_class

LAYOUT_ID = 5731  # any number unused by Slicer's built-in layouts (they are < 1000)
INPUT_VIEW = "UADCInput"
HEALTHY_VIEW = "UADCHealthy"
VIEW_GROUP = 5731  # Slicer's own views are in group 0
LAYOUT_XML = f"""
<layout type="horizontal" split="true">
  <item><view class="vtkMRMLSliceNode" singletontag="{INPUT_VIEW}">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">I</property>
    <property name="viewcolor" action="default">#F34A33</property>
    <property name="viewgroup" action="default">{VIEW_GROUP}</property>
  </view></item>
  <item><view class="vtkMRMLSliceNode" singletontag="{HEALTHY_VIEW}">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">H</property>
    <property name="viewcolor" action="default">#6EB04B</property>
    <property name="viewgroup" action="default">{VIEW_GROUP}</property>
  </view></item>
</layout>
"""


def register_layout(layout_node) -> None:
    """Add the two-view layout to a vtkMRMLLayoutNode (idempotent)."""
    if layout_node is not None and not layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)


def volume_choice_flags() -> int:
    composite = slicer.vtkMRMLSliceCompositeNode
    return composite.BackgroundVolumeFlag | composite.ForegroundVolumeFlag | composite.LabelVolumeFlag


def link_position_only(composite_node) -> None:
    """Linked control on, but never broadcast this view's volume choices."""
    composite_node.SetLinkedControl(True)
    composite_node.SetInteractionFlagsModifier(composite_node.GetInteractionFlagsModifier() & ~volume_choice_flags())


def composite_nodes_of_views(scene, view_names=(INPUT_VIEW, HEALTHY_VIEW)) -> list:
    return [node for node in nodes_by_class(scene, "vtkMRMLSliceCompositeNode") if node.GetLayoutName() in view_names]


def link_views(scene) -> None:
    for composite in composite_nodes_of_views(scene):
        link_position_only(composite)


# ----------------------------------------------------------------------------- application
def layout_node_in_app():
    return slicer.app.layoutManager().layoutLogic().GetLayoutNode()


def register_layout_in_app() -> None:
    """Called from the module's constructor once Slicer has started (startupCompleted)."""
    layout_manager = slicer.app.layoutManager()
    if layout_manager is not None:  # None when Slicer runs without its main window
        register_layout(layout_node_in_app())


def show_side_by_side(results, opacity: float) -> None:
    """Switch to the two-view layout, assign layers, link the views, fit the slices."""
    layout_manager = slicer.app.layoutManager()
    register_layout(layout_node_in_app())
    layout_manager.setLayout(LAYOUT_ID)
    slicer.app.processEvents()  # let the layout create the two views' nodes
    scene_logic.show_in_slice_views(slicer.mrmlScene, results.input_node, results.map_node,
                                    results.healthy_node, opacity, healthy_view_names=(HEALTHY_VIEW,))
    link_views(slicer.mrmlScene)
    for name in (INPUT_VIEW, HEALTHY_VIEW):
        widget = layout_manager.sliceWidget(name)
        if widget is not None:
            widget.sliceLogic().FitSliceToAll()
