"""Slicer-side helpers of the UADContrastive module.

Kept apart from the pure core (UADContrastiveLib) because some of these modules talk to
MRML. Only layout.py's *_in_app functions and show_side_by_side need the running Slicer
application; geometry, segments, scene and the rest of layout work with a bare MRML scene
(slicer-core wheel), and options, process, stages and dependencies with no Slicer at all,
so all are tested outside the application.
"""

# The submodules in the order a developer reload (the module's onReload) reloads them:
# every module after those it imports.
RELOAD_ORDER = ("core", "nodes", "geometry", "segments", "options", "process", "warm_worker", "stages",
                "dependencies", "installer", "device_probe", "findings_table", "scene", "layout",
                "parameter_node", "logic_protocol", "detection_logic", "detection_widget")


def reload_submodules() -> None:
    import importlib
    import sys

    for name in RELOAD_ORDER:
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            importlib.reload(module)
