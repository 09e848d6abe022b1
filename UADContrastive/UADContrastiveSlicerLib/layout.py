"""Side-by-side linked slice views: input + heat map on the left, healthy reconstruction
on the right. Needs the Slicer application (layout manager); the layer assignment itself
is pure MRML (scene.show_in_slice_views) and tested without the application."""
from __future__ import annotations

import slicer

from . import scene as scene_logic

LAYOUT_ID = 5731  # any number unused by Slicer's built-in layouts (they are < 1000)
HEALTHY_VIEW = "UADCHealthy"
INPUT_VIEW = "Red"
LAYOUT_XML = f"""
<layout type="horizontal" split="true">
  <item><view class="vtkMRMLSliceNode" singletontag="{INPUT_VIEW}">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">R</property>
    <property name="viewcolor" action="default">#F34A33</property>
  </view></item>
  <item><view class="vtkMRMLSliceNode" singletontag="{HEALTHY_VIEW}">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">H</property>
    <property name="viewcolor" action="default">#6EB04B</property>
  </view></item>
</layout>
"""


def show_side_by_side(results, opacity: float) -> None:
    """Switch to the two-view layout, assign layers, link the views, fit the slices."""
    layout_manager = slicer.app.layoutManager()
    layout_node = layout_manager.layoutLogic().GetLayoutNode()
    if not layout_node.IsLayoutDescription(LAYOUT_ID):
        layout_node.AddLayoutDescription(LAYOUT_ID, LAYOUT_XML)
    layout_manager.setLayout(LAYOUT_ID)
    slicer.app.processEvents()  # let the layout create the healthy view's nodes
    scene_logic.show_in_slice_views(slicer.mrmlScene, results.input_node, results.map_node,
                                    results.healthy_node, opacity, healthy_view_names=(HEALTHY_VIEW,))
    for name in (INPUT_VIEW, HEALTHY_VIEW):
        widget = layout_manager.sliceWidget(name)
        if widget is None:
            continue
        # Linked control: scrolling/zooming one view moves the other to the same place.
        widget.mrmlSliceCompositeNode().SetLinkedControl(True)
        widget.sliceLogic().FitSliceToAll()
