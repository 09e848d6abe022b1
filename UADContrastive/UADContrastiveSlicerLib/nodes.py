"""Node queries that do not leak.

vtkMRMLScene.GetNodesByClass returns a NEW vtkCollection that the caller owns: from Python
it arrives with a reference count of 2 and, left alone, it and every node in it are never
freed (measured with slicer-core; Testing/integration/test_slicer_node_references.py).
Slicer's own slicer.util.getNodesByClass releases it with UnRegister; this does the same for
any scene (slicer.util's version always queries slicer.mrmlScene, whatever scene it is given).
"""
from __future__ import annotations


def nodes_by_class(scene, class_name: str) -> list:
    """Every node of `class_name` (subclasses included) in `scene`, in scene order."""
    collection = scene.GetNodesByClass(class_name)
    collection.UnRegister(scene)
    return [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]


def nodes_of_exact_class(scene, class_name: str) -> list:
    """Nodes of exactly `class_name`: what a node selector shows when it hides child types."""
    return [node for node in nodes_by_class(scene, class_name) if node.GetClassName() == class_name]
