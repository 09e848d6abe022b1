"""Slicer-side helpers of the UADContrastive module.

Kept apart from the pure core (UADContrastiveLib) because some of these modules talk to
MRML. Only layout.py's *_in_app functions and show_side_by_side need the running Slicer
application; geometry, segments, scene and the rest of layout work with a bare MRML scene
(slicer-core wheel), and options, process, stages and dependencies with no Slicer at all,
so all are tested outside the application.
"""
