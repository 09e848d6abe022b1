"""The Slicer side of the UADContrastive module: its panel (detection_widget), logic
(detection_logic, behind logic_protocol) and parameter node, and their helpers.

Kept apart from the pure core (UADContrastiveLib) because some of these modules talk to
MRML or Qt. Only layout.py's *_in_app functions and show_side_by_side need the running
Slicer application; the panel runs with Slicer's real Python sources and stand-in widgets
(Testing/slicer_standins.py); nodes, geometry, segments, scene and the rest of layout work
with a bare MRML scene (slicer-core wheel); options, process, warm_worker, device_probe,
installer, dependencies, stages and findings_table need no Slicer at all. All are tested
outside the application.
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
