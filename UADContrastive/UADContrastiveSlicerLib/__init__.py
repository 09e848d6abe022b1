"""Slicer-side helpers of the UADContrastive module.

Kept apart from the pure core (UADContrastiveLib) because some of these modules talk to
MRML. Only layout.py needs the running Slicer application; geometry, segments, scene,
process and options work with a bare MRML scene (slicer-core wheel) or no Slicer at
all, so they are unit-tested outside the application.
"""
